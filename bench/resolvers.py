"""OmegaConf resolvers used by ``conf/``; registered once on import of ``bench``."""

import datetime

from omegaconf import OmegaConf


def _sweep_name(experiment) -> str:
    """Sweep folder: the experiment's name (so a rerun finds finished cells), else the start time."""
    if experiment:
        return str(experiment)
    return datetime.datetime.now().strftime("%Y-%m-%d/%H-%M-%S")


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("sweep_name"):
        OmegaConf.register_new_resolver("sweep_name", _sweep_name, use_cache=True)
