"""Reading a run record: ``parse_record(raw) -> Record``, a parsed ``metrics.json`` checked against the
contract; a malformed one raises ``RecordError`` with a one-line reason naming the field (reports list it
as unreadable and render the rest).

Records of the release before ``schema`` was written read as version 1; ``SCHEMA_VERSION`` is what a job
writes now. Metrics are fractions in [0, 1] (None or NaN: not computable). A curve's points each hold
an epoch and such metrics. JSON nested deeper than ``MAX_DEPTH`` is refused (no record nests that deep;
reading it would exhaust the interpreter's stack further on).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from record.keys import NAMING_KEYS, config_value

SCHEMA_VERSION = 2  # 2: ``schema`` and ``choices`` written; 1: the records before them
# the published conventions' metrics as their code computes them: areas summed over bins may leave [0, 1]
# by a rounding error (ADer's binned AUPRO of a class: -7.9e-17)
CONVENTION_SLACK = 1e-9
MAX_DEPTH = 64  # a record nests about 6 deep (config nodes, curve.points[i].conventions.<name>.<metric>)

STATUSES = ("completed", "failed", "running")
# what a record's metrics may be named: fractions in [0, 1] (docs/reports.md)
_SEED_RANGE = (-(2**63), 2**64)  # what torch and numpy can be seeded with


class RecordError(ValueError):
    """A record that does not follow this contract; the message is one line naming the field."""


@dataclass(frozen=True)
class Metrics:
    """``metrics`` of a record: the mean over classes and each class's values (fractions in [0, 1];
    None where a metric was not computable, e.g. a class without defective pixels)."""

    mean: dict[str, float | None]
    per_class: dict[str, dict[str, float | None]]
    note: str | None = None
    undefined: dict[str, dict[str, str]] = field(default_factory=dict)  # class -> metric -> why it is None
    # eval.conventions: each published convention's metrics on the same maps (``mean``, ``per_class``)
    conventions: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class CurvePoint:
    """One test evaluation while training (``eval.every``): the epochs done, the class means of every
    metric and of every convention's metrics, the evaluation's seconds."""

    epoch: int
    mean: dict[str, float | None]
    conventions: dict[str, dict[str, float | None]] = field(default_factory=dict)
    eval_s: float | None = None
    conventions_s: float | None = None


@dataclass(frozen=True)
class Curve:
    """``curve`` of a record: its points by epoch, the last one the headline evaluation."""

    every: int | None
    points: tuple[CurvePoint, ...]
    eval_s_per_pass: float | None = None


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
    curve: Curve | None = None
    timing: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None

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
    def device_type(self) -> str | None:
        """The device type the job ran on (``env.device`` reads "cpu: ..." / "cuda: ...")."""
        device = self.env.get("device")
        return device.split(":", 1)[0] if isinstance(device, str) and ":" in device else None

    @property
    def n_seeds(self) -> int | None:
        value = self.config.get("n_seeds")
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def _fail(where: str, reason: str) -> RecordError:
    return RecordError(f"{where}: {reason}")


def _metric(value, where: str, slack: float = 0.0) -> float | None:
    """A metric value: a number in [0, 1] (``slack``: give or take that much), or None / NaN (not
    computable; written as NaN by the release before this contract for a class without defective pixels)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(where, f"a metric must be a number in [0, 1], not {type(value).__name__} {_short(value)}")
    value = float(value)
    if math.isnan(value):
        return None
    if not -slack <= value <= 1.0 + slack:
        raise _fail(where, f"a metric must be a number in [0, 1], not {value!r}")
    return value


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:37] + "..."


def _metric_map(values, where: str, slack: float = 0.0) -> dict[str, float | None]:
    if not isinstance(values, dict):
        raise _fail(where, f"must be a mapping of metric names to numbers, not {type(values).__name__}")
    return {str(k): _metric(v, f"{where}.{k}", slack) for k, v in values.items()}


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
                   undefined={str(c): {str(m): w for m, w in v.items()} for c, v in undefined.items()},
                   conventions=_conventions(raw.get("conventions")))


def _conventions(raw) -> dict[str, dict[str, Any]]:
    """``metrics.conventions``: per convention its ``mean`` metrics (checked), its ``per_class`` ones and
    what else it says (``backend``)."""
    if raw is None:
        return {}
    _mapping(raw, "metrics.conventions")
    out = {}
    for name, values in raw.items():
        where = f"metrics.conventions.{name}"
        _mapping(values, where)
        per_class = values.get("per_class") or {}
        _mapping(per_class, f"{where}.per_class")
        out[str(name)] = {**values, "mean": _metric_map(values.get("mean") or {}, f"{where}.mean", CONVENTION_SLACK),
                          **({"per_class": {str(c): _metric_map(v or {}, f"{where}.per_class.{c}", CONVENTION_SLACK)
                                            for c, v in per_class.items()}} if "per_class" in values else {})}
    return out


def _mapping(value, where: str) -> None:
    if not isinstance(value, dict):
        raise _fail(where, f"must be a mapping, not {type(value).__name__}")


def _seconds(value, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise _fail(where, f"must be a finite number of seconds >= 0, not {_short(value)}")
    return float(value)


def _curve_point(raw, where: str) -> CurvePoint:
    if not isinstance(raw, dict):
        raise _fail(where, f"a curve point must be a mapping with an epoch and metrics, not {type(raw).__name__} "
                           f"{_short(raw)}")
    epoch = raw.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise _fail(f"{where}.epoch", f"must be an integer >= 0, not {_short(epoch)}")
    conventions = raw.get("conventions") or {}
    _mapping(conventions, f"{where}.conventions")
    return CurvePoint(epoch=epoch, mean=_metric_map(raw.get("mean"), f"{where}.mean"),
                      conventions={str(n): _metric_map(v, f"{where}.conventions.{n}", CONVENTION_SLACK)
                                   for n, v in conventions.items()},
                      eval_s=_seconds(raw.get("eval_s"), f"{where}.eval_s"),
                      conventions_s=_seconds(raw.get("conventions_s"), f"{where}.conventions_s"))


def _curve(raw) -> Curve | None:
    if raw is None:
        return None
    _mapping(raw, "curve")
    points = raw.get("points") or []
    if not isinstance(points, list):
        raise _fail("curve.points", f"must be a list of points, not {type(points).__name__}")
    every = raw.get("every")
    if every is not None and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
        raise _fail("curve.every", f"must be a positive integer, not {_short(every)}")
    return Curve(every=every, points=tuple(_curve_point(p, f"curve.points[{i}]") for i, p in enumerate(points)),
                 eval_s_per_pass=_seconds(raw.get("eval_s_per_pass"), "curve.eval_s_per_pass"))


def check_depth(raw, limit: int = MAX_DEPTH) -> None:
    """Raise ``RecordError`` when ``raw`` nests mappings and lists deeper than ``limit`` (walked without
    recursion, so any depth json could parse is measured)."""
    stack = [(raw, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                raise RecordError(f"nested deeper than {limit} levels: not a run record")
            stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))


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
    non-numeric count of parameters or GFLOPs, a curve point that is not ``{"epoch", "mean", ...}`` or
    holds such metrics, nesting deeper than ``MAX_DEPTH``."""
    if not isinstance(raw, dict):
        raise RecordError(f"not a JSON object but {type(raw).__name__}")
    check_depth(raw)
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
    timing = raw.get("timing") or {}
    _mapping(timing, "timing")
    run_dir = _optional_str(raw, "run_dir")
    experiment = raw.get("experiment", config.get("experiment"))
    return Record(
        schema=schema, status=status, task=_optional_str(raw, "task") if "task" in raw else config.get("task"),
        experiment=experiment if isinstance(experiment, str) and experiment else None,
        seed=_seed(raw.get("seed", config.get("seed"))), overrides=tuple(overrides), config=config,
        choices={str(k): v for k, v in choices.items()}, metrics=_metrics(raw.get("metrics")),
        complexity=_complexity(raw.get("complexity")), error=_optional_str(raw, "error"), env=env, raw=raw,
        curve=_curve(raw.get("curve")), timing=timing, run_dir=run_dir,
    )
