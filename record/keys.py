"""Which config keys change no number, and configs as dotted keys: the part of the record contract that
compares configs (a resume, a skip, an average across runs) and names a run's config-group options.

- ``NEUTRAL``: config keys (a key names itself and everything under it) that change no number, each
  tagged with what it is neutral for: ``resume`` (a checkpoint continues under a config differing only in
  these), ``skip`` (a completed record is reused for a job differing only in these), ``average`` (reports
  average runs differing only in these, and they never split a table row), ``rundir`` (left out of a
  sweep's run-dir names: ``conf/config.yaml`` ``hydra.job.config.override_dirname.exclude_keys`` lists
  exactly the keys tagged ``rundir``). ``tests/test_run_record.py`` checks that each entry moves no number.
- ``NAMING_KEYS``: the config value that names each group's option (reports match a table row's
  ``model=mlp`` on it, so an option file needs no ``name:`` for reports).
- ``flatten``, ``config_value`` and ``config_diff``: a resolved config as dotted keys, one dotted key's
  value, and the keys two configs differ in; ``with_device``: a config with the device type it ran on.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

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
    "trainer.ckpt_every": _RUN,  # how often last.ckpt is written
    "trainer.threads": _RUN,  # torch's CPU threads
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


def config_value(config, dotted: str):
    """The value at a dotted key of a resolved config (``"model.name"``), None where any part is absent."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def with_device(config: dict | None, device_type: str | None) -> dict | None:
    """``config`` with ``trainer.device`` replaced by the device type the job ran on (``auto`` resolves to
    cpu or cuda: the two take different dropout paths, so it is the effective device that is compared)."""
    if not isinstance(config, dict) or device_type is None or not isinstance(config.get("trainer"), dict):
        return config
    return {**config, "trainer": {**config["trainer"], "device": device_type}}
