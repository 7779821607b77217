"""The file names of a run dir that the job writes and the reports, resume and skip read.

``RECORD``: the run record (``metrics.json``). ``CKPT``: the model's checkpoint (``last.ckpt``, written
by ``fit`` and resumed from). ``CURVE``: the test curve's points as they come (``eval.every``).
``MAPS``: the example anomaly maps (``eval.save_maps``). ``rerun=true`` moves ``PREVIOUS_OWNED`` aside.
"""

from __future__ import annotations

RECORD = "metrics.json"
CKPT = "last.ckpt"
CURVE = "curve.json"
MAPS = "maps"
# what a rerun moves to .previous/<time>/ (a record and what it describes)
PREVIOUS_OWNED = (RECORD, CKPT, MAPS)
# files written atomically (temp name, rename): a killed job may leave their temp files behind
ATOMIC = (RECORD, CKPT)
