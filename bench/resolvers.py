"""OmegaConf resolvers used by ``conf/``; registered once on import of ``bench``."""

import datetime
import hashlib
import os

from omegaconf import OmegaConf

NAME_BYTES = 200  # longest run-dir name kept whole (file systems allow 255 bytes per component)


def _sweep_name(experiment, profile=None) -> str:
    """Sweep folder: ``<experiment>-<profile>`` (so a rerun finds finished cells, and a smoke sweep and a
    demo sweep of one experiment never share a folder), else the start time."""
    if experiment:
        return f"{experiment}-{profile}" if profile else str(experiment)
    return datetime.datetime.now().strftime("%Y-%m-%d/%H-%M-%S")


def inputs_digest(data_root) -> str:
    """``data-<8 hex>``: a digest of the resolved data root (absolute), the input of a cell that need not be on
    the command line (``UNIAD_BENCH_DATA``): two copies of the data never share a run dir."""
    path = os.path.abspath(os.path.expanduser(str(data_root)))
    return "data-" + hashlib.sha256(path.encode()).hexdigest()[:8]


def run_dir_name(overrides, data_root=None) -> str:
    """A sweep cell's folder name from its overrides (``hydra.job.override_dirname``): always one path
    component inside the sweep dir (docs/reliability.md).

    ``%``, ``/``, ``\\`` and control characters are percent-escaped (``data.root=../x`` becomes
    ``data.root=..%2Fx``), so distinct overrides give distinct names and a value never adds a
    component or climbs out with ``..``. A name over ``NAME_BYTES`` bytes keeps its start and ends
    with a hash of the whole; no overrides at all (a sweep of seeds only) is ``defaults``.

    ``data_root`` (the resolved ``data.root``) appends ``@data-<digest>`` (``inputs_digest``): the typed
    overrides stay readable, and a sweep over another copy of the data gets its own cells.
    """
    name = _overrides_name("" if overrides is None else str(overrides))
    return name if data_root is None else f"{name}@{inputs_digest(data_root)}"


def _overrides_name(text: str) -> str:
    if not text:
        return "defaults"
    name = "".join(f"%{ord(c):02X}" if c in "%/\\" or ord(c) < 32 or ord(c) == 127 else c for c in text)
    if len(name.encode()) > NAME_BYTES:
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        head = name.encode()[: NAME_BYTES - 20].decode(errors="ignore")
        name = f"{head}~{digest}"
    return name


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("sweep_name"):
        OmegaConf.register_new_resolver("sweep_name", _sweep_name, use_cache=True)
    if not OmegaConf.has_resolver("run_dir_name"):
        OmegaConf.register_new_resolver("run_dir_name", run_dir_name)
