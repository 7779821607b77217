"""OmegaConf resolvers used by ``conf/``; registered once on import of ``bench``."""

import datetime
import hashlib

from omegaconf import OmegaConf

NAME_BYTES = 200  # longest run-dir name kept whole (file systems allow 255 bytes per component)


def _sweep_name(experiment) -> str:
    """Sweep folder: the experiment's name (so a rerun finds finished cells), else the start time."""
    if experiment:
        return str(experiment)
    return datetime.datetime.now().strftime("%Y-%m-%d/%H-%M-%S")


def run_dir_name(overrides) -> str:
    """A sweep cell's folder name from its overrides (``hydra.job.override_dirname``): always one path
    component inside the sweep dir (README, "Bad input, reruns and resuming").

    ``%``, ``/``, ``\\`` and control characters are percent-escaped (``data.root=../x`` becomes
    ``data.root=..%2Fx``), so distinct overrides give distinct names and a value never adds a
    component or climbs out with ``..``. A name over ``NAME_BYTES`` bytes keeps its start and ends
    with a hash of the whole; no overrides at all (a sweep of seeds only) is ``defaults``.
    """
    text = "" if overrides is None else str(overrides)
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
