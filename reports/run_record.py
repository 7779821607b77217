"""The run record ``<run dir>/metrics.json``: its file name, its shape, and which config keys change no number.

This module is the one contract between the job that writes records (``bench/``) and everything that
reads them (``reports/``, resuming, skipping completed runs); it imports neither torch nor pandas.

- ``RECORD``: the file name. ``SCHEMA_VERSION``: the version a job writes as ``schema`` (records of the
  release before it carry no ``schema`` and read as version 1).
- ``NEUTRAL``: config keys (a key names itself and everything under it) that change no number, each
  tagged with what it is neutral for: ``resume`` (a checkpoint continues under a config differing only in
  these), ``skip`` (a completed record is reused for a job differing only in these), ``average`` (reports
  average runs differing only in these, and they never split a table row), ``rundir`` (left out of a
  sweep's run-dir names: ``conf/config.yaml`` ``hydra.job.config.override_dirname.exclude_keys`` lists
  exactly the keys tagged ``rundir``). ``tests/test_run_record.py`` checks that each entry moves no number.
- ``NAMING_KEYS`` and ``Record.group_choices``: the option of each config group a run was composed from
  (reports match a table row's ``model=mlp`` on it, so an option file needs no ``name:`` for reports).
- ``flatten``, ``config_value`` and ``config_diff``: a resolved config as dotted keys, one dotted key's
  value, and the keys two configs differ in.
- ``parse_record(raw) -> Record``: a record checked against this contract; a malformed one raises
  ``RecordError`` with a one-line reason (reports list it as unreadable and render the rest).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

RECORD = "metrics.json"
SCHEMA_VERSION = 2  # 2: ``schema`` and ``choices`` written; 1: the records before them

# the config value that names each group's option (shipped options set it to their file's stem), read
# for a group a record has no choice of (records of the release before choices; jobs run without Hydra)
NAMING_KEYS = {
    "model": "model.name", "decoder": "decoder.design", "loss": "loss.name", "backbone": "backbone.name",
    "data": "data.name", "logger": "logger.name", "profile": "profile_name",
}

PURPOSES = ("resume", "skip", "average", "rundir")
_ALL = frozenset(PURPOSES)
_RUN = frozenset({"resume", "skip", "average"})  # neutral for every use of a config, kept in run-dir names

# key -> what it is neutral for. Keys not listed change numbers (trainer.compile and trainer.device take
# another dropout path: SFC64 masks on an eager CPU, F.dropout when compiled or on CUDA; cache.dtype and
# cache.features change the stored features), so a resume, a skip or an average across them is refused.
NEUTRAL: dict[str, frozenset[str]] = {
    # the replicate axis, not a neutral key: reports average over it, run-dir names end in seed=N instead
    "seed": frozenset({"average", "rundir"}),
    # job control
    "rerun": _ALL,
    "lock_stale_h": _ALL,
    "verbose": _ALL,  # per-job tables on the console or in the job's log only
    "ckpt": frozenset({"resume", "average"}),  # task=eval reads it: another checkpoint is another result
    # where data and caches live; the data itself is data.root, which is compared (and names the run dir:
    # the roots of mvtec and synthetic derive from paths.data_root)
    "paths.data_root": _RUN,
    "paths.cache_root": _ALL,
    "logger": _ALL,  # where scalars are logged
    "trainer.num_workers": _RUN,  # data-loader processes
    "trainer.threads": _RUN,  # torch's CPU threads
    "trainer.ckpt_every": _RUN,  # how often last.ckpt is written
    "cache.disk": _RUN,  # cached features on disk or in memory: the same tensors
    "eval": frozenset({"resume"}),  # evaluation is redone after every resume
    "eval.save_maps": _RUN,  # example maps written beside the record
    "eval.batch_size": _RUN,  # evaluation batch size
    # a test curve, and other conventions' metrics, beside the headline (which they leave unchanged); a
    # completed record without what they ask for is not reused
    "eval.every": frozenset({"resume", "average"}),
    "eval.conventions": frozenset({"resume", "average"}),
    "vis": _RUN,  # read only by the vis tasks
    # labels; the values they stand for are compared
    "experiment": _RUN,
    "n_seeds": _RUN,
    "profile_name": frozenset({"resume", "skip"}),
    # launcher settings (override keys; a record's config holds no hydra node)
    "hydra/launcher": _ALL,
    **{f"hydra.launcher.{k}": _ALL for k in (
        "partition", "account", "qos", "timeout_min", "gpus_per_node", "cpus_per_task", "mem_gb",
        "array_parallelism", "additional_parameters", "max_parallel")},
}


class RecordError(ValueError):
    """A record that does not follow this contract; the message is one line naming the field."""


def _under(key: str, prefix: str) -> bool:
    return key == prefix or key.startswith(prefix + ".") or key.startswith(prefix + "/")


def neutral_for(purpose: str) -> tuple[str, ...]:
    """The entries of ``NEUTRAL`` tagged with ``purpose`` (one of ``PURPOSES``)."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}, got {purpose!r}")
    return tuple(k for k, tags in NEUTRAL.items() if purpose in tags)


def is_neutral(key: str, purpose: str) -> bool:
    """Whether a dotted config key (``config.`` prefix allowed) or an override key (``+a.b``,
    ``hydra/launcher``) is neutral for ``purpose``."""
    key = key.lstrip("+~")
    if key.startswith("config."):
        key = key[len("config.") :]
    return any(_under(key, p) for p in neutral_for(purpose))


def _freeze(value):
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def flatten(obj, prefix: str = "") -> dict:
    """``{"a": {"b": [1, 2]}}`` -> ``{"a.b": (1, 2)}``; with ``prefix="config"``: ``{"config.a.b": ...}``.

    Lists become tuples (hashable; dicts inside lists become sorted JSON); an empty dict under a key is
    that key with value None.
    """
    if not isinstance(obj, dict):
        return {prefix: _freeze(obj)}
    out: dict = {}
    for key, value in obj.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    if not obj and prefix:
        out[prefix] = None
    return out


def config_diff(old: Mapping | None, new: Mapping | None, purpose: str, *, only: Iterable[str] | None = None
                ) -> list[str]:
    """Sorted dotted keys whose values differ between two resolved configs, outside the keys neutral for
    ``purpose``; ``only``: compare just the keys under these prefixes. A key present on one side only
    differs."""
    a, b = flatten(dict(old or {})), flatten(dict(new or {}))
    only = tuple(only) if only is not None else None
    keys = [k for k in a.keys() | b.keys()
            if not is_neutral(k, purpose) and (only is None or any(_under(k, p) for p in only))]
    return sorted(k for k in keys if a.get(k, "<absent>") != b.get(k, "<absent>"))


def shown_keys(keys: list[str], limit: int = 6) -> str:
    """``a, b, c (+4 more)``: differing keys for a one-line message."""
    return ", ".join(keys[:limit]) + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


# ------------------------------------------------------------------------------------------------ records
STATUSES = ("completed", "failed", "running")
# what a record's metrics may be named: fractions in [0, 1] (README "Reports")
_SEED_RANGE = (-(2**63), 2**64)  # what torch and numpy can be seeded with


@dataclass(frozen=True)
class Metrics:
    """``metrics`` of a record: the mean over classes and each class's values (fractions in [0, 1];
    None where a metric was not computable, e.g. a class without defective pixels)."""

    mean: dict[str, float | None]
    per_class: dict[str, dict[str, float | None]]
    note: str | None = None
    undefined: dict[str, dict[str, str]] = field(default_factory=dict)  # class -> metric -> why it is None


@dataclass(frozen=True)
class Record:
    """A run record that follows the contract. ``raw`` keeps the whole parsed JSON object."""

    schema: int
    status: str
    task: str | None
    experiment: str | None
    seed: int | None
    overrides: tuple[str, ...]
    config: dict
    choices: dict[str, str]
    metrics: Metrics | None
    complexity: dict[str, Any]
    error: str | None
    env: dict
    raw: dict = field(repr=False)

    @property
    def group_choices(self) -> dict[str, str]:
        """Each config group's option (``model: uniad``): the recorded Hydra choice, or for a group without
        one the config value that names it (``NAMING_KEYS``), so older records match rows alike."""
        found = {group: option for group, option in self.choices.items() if option is not None}
        for group, key in NAMING_KEYS.items():
            if group not in found:
                value = config_value(self.config, key)
                if isinstance(value, str):
                    found[group] = value
        return found

    @property
    def n_seeds(self) -> int | None:
        value = self.config.get("n_seeds")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def config_value(config, dotted: str):
    """The value at a dotted key of a resolved config (``"model.name"``), None where any part is absent."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _fail(where: str, reason: str) -> RecordError:
    return RecordError(f"{where}: {reason}")


def _metric(value, where: str) -> float | None:
    """A metric value: a number in [0, 1], or None / NaN (not computable; written as NaN by the release
    before this contract for a class without defective pixels)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, f"a metric must be a number in [0, 1], not {type(value).__name__} {_short(value)}")
    value = float(value)
    if math.isnan(value):
        return None
    if not 0.0 <= value <= 1.0:
        raise _fail(where, f"a metric must be a number in [0, 1], not {value!r}")
    return value


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _metric_map(values, where: str) -> dict[str, float | None]:
    if not isinstance(values, dict):
        raise _fail(where, f"must be a mapping of metric names to numbers, not {type(values).__name__}")
    return {str(k): _metric(v, f"{where}.{k}") for k, v in values.items()}


def _metrics(raw) -> Metrics | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise _fail("metrics", f"must be a mapping, not {type(raw).__name__}")
    mean = _metric_map(raw.get("mean") or {}, "metrics.mean")
    per_class_raw = raw.get("per_class") or {}
    if not isinstance(per_class_raw, dict):
        raise _fail("metrics.per_class", f"must be a mapping of categories, not {type(per_class_raw).__name__}")
    per_class = {str(c): _metric_map(v or {}, f"metrics.per_class.{c}") for c, v in per_class_raw.items()}
    note = raw.get("note")
    undefined = raw.get("undefined") or {}
    if not isinstance(undefined, dict) or not all(
            isinstance(v, dict) and all(isinstance(w, str) for w in v.values()) for v in undefined.values()):
        raise _fail("metrics.undefined", "must map categories to {metric: reason}")
    return Metrics(mean=mean, per_class=per_class, note=str(note) if note is not None else None,
                   undefined={str(c): {str(m): w for m, w in v.items()} for c, v in undefined.items()})


def _numeric_complexity_key(name: str) -> bool:
    return name.endswith(("_params", "gflops", "_numbers", "_size", "_dim", "positions"))


def _complexity(raw) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise _fail("complexity", f"must be a mapping, not {type(raw).__name__}")
    out = {}
    for name, value in raw.items():
        if _numeric_complexity_key(str(name)) and value is not None:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
                    or value < 0:
                raise _fail(f"complexity.{name}", f"must be a finite number >= 0, not {_short(value)}")
        out[str(name)] = value
    return out


def _optional_str(raw: dict, key: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail(key, f"must be a string, not {type(value).__name__} {_short(value)}")
    return value


def _seed(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail("seed", f"must be an integer, not {type(value).__name__} {_short(value)}")
    if not _SEED_RANGE[0] <= value < _SEED_RANGE[1]:
        raise _fail("seed", f"{value} is outside the 64-bit range a run can be seeded with")
    return value


def parse_record(raw) -> Record:
    """``raw`` (a parsed ``metrics.json``) as a ``Record``; raises ``RecordError`` (one line) when it breaks
    the contract: not a mapping, an unknown status, non-numeric or out-of-range metrics (``"0.93"``,
    ``true``, lists, ``inf``, ``1e308``), ``per_class`` not a mapping, a seed beyond 64 bits, a
    non-numeric count of parameters or GFLOPs."""
    if not isinstance(raw, dict):
        raise RecordError(f"not a JSON object but {type(raw).__name__}")
    schema = raw.get("schema", 1)
    if isinstance(schema, bool) or not isinstance(schema, int) or not 1 <= schema <= SCHEMA_VERSION:
        raise _fail("schema", f"{_short(schema)} is not a record version this code reads (1..{SCHEMA_VERSION})")
    status = raw.get("status")
    if status not in STATUSES:
        raise _fail("status", f"{_short(status)} is none of {', '.join(STATUSES)}")
    config = raw.get("config")
    if config is None:
        config = {}
    if not isinstance(config, dict):
        raise _fail("config", f"must be a mapping, not {type(config).__name__}")
    choices = raw.get("choices") or {}
    if not isinstance(choices, dict) or not all(isinstance(v, str | None) for v in choices.values()):
        raise _fail("choices", "must map config groups to option names")
    overrides = raw.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise _fail("overrides", "must be a list of strings")
    env = raw.get("env") or {}
    if not isinstance(env, dict):
        raise _fail("env", f"must be a mapping, not {type(env).__name__}")
    experiment = raw.get("experiment", config.get("experiment"))
    return Record(
        schema=schema, status=status, task=_optional_str(raw, "task") if "task" in raw else config.get("task"),
        experiment=experiment if isinstance(experiment, str) and experiment else None,
        seed=_seed(raw.get("seed", config.get("seed"))), overrides=tuple(overrides), config=config,
        choices={str(k): v for k, v in choices.items()}, metrics=_metrics(raw.get("metrics")),
        complexity=_complexity(raw.get("complexity")), error=_optional_str(raw, "error"), env=env, raw=raw,
    )
