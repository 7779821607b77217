"""The installed config groups (``conf/<group>/<option>.yaml``) and a run's choice in each.

A run records its Hydra group choices (``model=uniad``, ``loss=mse``, ...) in its record and checkpoint.
Those choices, and nothing executable, are what a checkpoint contributes when its model is rebuilt
(``bench.checkpoint.model_config``): each option is read from this installation's ``conf/``.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench.errors import BenchError
from record.keys import NAMING_KEYS, config_value

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# groups whose option builds the model (the rest of a run's config is the job's own)
MODEL_GROUPS = ("model", "decoder", "loss", "backbone")
_OPTION = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")


def options(group: str) -> list[str]:
    """The option names of ``group`` (its YAML files' stems)."""
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def job_choices(hydra_choices) -> dict[str, str | None]:
    """The run's own group choices from Hydra's ``runtime.choices`` (Hydra's own ``hydra/...`` left out)."""
    return {str(k): (None if v is None else str(v)) for k, v in dict(hydra_choices or {}).items()
            if not str(k).startswith("hydra/")}


def infer_choices(config: dict) -> dict[str, str]:
    """The model groups' options a resolved config was composed from, read from the values that name them
    (``model.name``, ``decoder.design``, ``loss.name``, ``backbone.name``); a value that names no installed
    option is left out (the caller refuses what it cannot rebuild)."""
    found = {}
    for group in MODEL_GROUPS:
        value = config_value(config, NAMING_KEYS[group])
        if isinstance(value, str) and value in options(group):
            found[group] = value
    return found


def load_option(group: str, option) -> DictConfig:
    """``conf/<group>/<option>.yaml``, refusing anything that is not one of the installed options."""
    if not isinstance(option, str) or not _OPTION.match(option) or option not in options(group):
        known = ", ".join(options(group))
        raise BenchError(f"{group}={option!r} is not an installed option (conf/{group}/: {known})")
    return OmegaConf.load(CONF_DIR / group / f"{option}.yaml")
