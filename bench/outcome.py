"""What a sweep job did, as its sweep's summary needs it: ``<run dir>/.outcome.json``.

The record alone cannot tell it: a cell refused because its run dir holds a completed record of another
config leaves that record as it is (``status: completed``), and a cell skipped as already done looks like
one that ran. ``bench/__main__.py`` removes the file when a job starts and writes it when the job ends;
a job that died in between leaves none, and the summary falls back to the record.
"""

from __future__ import annotations

import json
from pathlib import Path

OUTCOME = ".outcome.json"
# ran and completed | skipped, its completed record is this config's | refused: a record of another config
# is there | failed | another live job holds the run dir's lock | stopped by Ctrl-C
OUTCOMES = ("completed", "skipped", "refused", "failed", "running_elsewhere", "interrupted")


def clear(run_dir: Path) -> None:
    (Path(run_dir) / OUTCOME).unlink(missing_ok=True)


def write(run_dir: Path, outcome: str, error: str | None = None) -> None:
    """Best effort: a job whose outcome cannot be written is reported from its record."""
    assert outcome in OUTCOMES, outcome
    try:
        (Path(run_dir) / OUTCOME).write_text(json.dumps({"outcome": outcome, "error": error}) + "\n")
    except OSError:
        pass


def read(run_dir: Path) -> dict | None:
    try:
        payload = json.loads((Path(run_dir) / OUTCOME).read_text())
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, dict) and payload.get("outcome") in OUTCOMES else None
