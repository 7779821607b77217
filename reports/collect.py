"""Find run records (``metrics.json``) under run or multirun folders and load them into one DataFrame.

One row per record. Columns:

- ``run_dir`` (the folder holding the record), ``status``, ``error``, ``task``, ``experiment``, ``seed``
  (an eval record of a collected fit run's checkpoint: that fit's seed),
  ``n_seeds`` (how many seeds the experiment asked for, when the record says), ``overrides`` (tuple of
  strings), ``swept`` (the overrides that define a row: without the seed, the experiment and the keys
  ``record.keys.NEUTRAL`` tags ``average``, sorted, comma-joined; ``""`` for the defaults),
  ``checkpoint`` (task=eval: the run dir of the checkpoint it evaluated), ``has_maps``, ``git_sha``,
  ``git_dirty`` (from ``env``);
- ``config.<dotted key>``: the resolved config, flattened (lists become tuples);
- ``metric.<name>``: ``metrics.mean`` (fractions in [0, 1]), and ``metric.mad`` (ADer's mAD: the mean of the
  metrics ``metrics.registry`` marks as its members, when a run has every one of them);
- ``complexity.<name>``: ``learnable_params``, ``gflops``, ``backbone_params`` …;
- ``per_class.<category>.<metric>``: ``metrics.per_class`` (NaN where the record holds null);
- ``undefined.<category>.<metric>``: why ``metrics.undefined`` says that metric is not defined for that
  category (e.g. no anomalous pixel among its test images); the record's mean is over the other categories.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from metrics.registry import MAD, column_order, mad_members
from record.files import CKPT, MAPS, RECORD
from record.keys import flatten, is_neutral
from record.parse import Metrics, Record, parse_record
from record.store import read_record_file

CHOICE = "choice."  # run-frame columns of the config-group options (``choice.model``: ``uniad``)


def key_name(column: str) -> str:
    """A run-frame column as a user writes the key: ``config.trainer.lr`` -> ``trainer.lr``,
    ``choice.model`` -> ``model``."""
    for prefix in ("config.", CHOICE):
        if column.startswith(prefix):
            return column[len(prefix):]
    return column


# a run's identity, first in results.csv; FIXED_COLUMNS lead the run frame
IDENTITY_COLUMNS = ("run_dir", "status", "error", "task", "experiment", "seed", "n_seeds", "overrides", "swept")
FIXED_COLUMNS = (*IDENTITY_COLUMNS, "checkpoint", "has_maps", "git_sha", "git_dirty")


@dataclass
class Collection:
    """What :func:`collect` found: the runs, and the records it could not read."""

    frame: pd.DataFrame
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, one-line reason)
    roots: list[str] = field(default_factory=list)


def is_missing(value) -> bool:
    """None, NaN or pd.NA (safe on tuples and strings, unlike ``pd.isna``)."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def is_ignored(key: str) -> bool:
    """Whether a dotted config key (or an override key such as ``hydra/launcher``) is neutral for averaging
    (``record.keys.NEUTRAL``): it never splits a row."""
    return is_neutral(key, "average")


def find_records(paths: Iterable[str | Path]) -> list[Path]:
    """Every ``metrics.json`` under the given folders (recursively; a path may also be a record itself).

    Hidden folders (``.hydra``, ``.git``) are skipped; the result is sorted and free of duplicates.
    """
    found: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            if path.name == RECORD:
                found.add(path)
            continue
        if not path.is_dir():
            raise FileNotFoundError(f"no such run folder: {path}")
        for folder, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if RECORD in files:
                found.add(Path(folder) / RECORD)
    return sorted(found, key=lambda p: p.as_posix())


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def swept_of(overrides: Iterable[str]) -> str:
    """The overrides that define a row: no seed, no experiment, no key neutral for averaging; sorted."""
    keep = sorted(o for o in overrides if not is_ignored(_override_key(o)))
    return ",".join(keep)


def record_row(record: Record | dict, run_dir: str | Path) -> dict:
    """One DataFrame row (a flat dict) from one record checked against the contract (a raw record is
    parsed first: ``parse_record``, RecordError when it breaks the contract)."""
    if not isinstance(record, Record):
        record = parse_record(record)
    metrics = record.metrics or Metrics(mean={}, per_class={})
    error = record.error
    if record.status != "completed" and not error:
        error = f"status {record.status!r} (no error recorded)"
    row = {
        "run_dir": Path(run_dir).as_posix(),
        "status": record.status,
        "error": " ".join(error.split()) if error else None,
        "task": record.task,
        "experiment": record.experiment,
        "seed": record.seed,
        "n_seeds": record.n_seeds,
        "overrides": record.overrides,
        "swept": swept_of(record.overrides),
        "checkpoint": checkpoint_run(record),
        "has_maps": (Path(run_dir) / MAPS).is_dir(),
        "git_sha": record.env.get("git_sha"),
        "git_dirty": record.env.get("git_dirty"),
    }
    row.update(flatten(record.config, "config"))
    row.update({f"{CHOICE}{group}": option for group, option in record.group_choices.items()})
    for name, value in metrics.mean.items():
        row[f"metric.{name}"] = _number(value)
    # ADer's mAD: the unweighted mean of its members' class means (a run has it when it has every one)
    members = [row.get(f"metric.{name}") for name in mad_members()]
    if all(isinstance(v, float) and not math.isnan(v) for v in members):
        row[f"metric.{MAD}"] = sum(members) / len(members)
    for category, values in metrics.per_class.items():
        for name, value in values.items():
            row[f"per_class.{category}.{name}"] = _number(value)
    for category, values in metrics.undefined.items():
        for name, why in values.items():
            row[f"undefined.{category}.{name}"] = " ".join(why.split())
    for name, value in record.complexity.items():
        row[f"complexity.{name}"] = _number(value) if not isinstance(value, str) else value
    return row


def checkpoint_run(record: Record) -> str | None:
    """The run a task=eval record evaluated: its ``checkpoint.path`` as a normalised run dir (a path to
    ``last.ckpt`` and its folder name one run); None for a record of no checkpoint."""
    use = record.raw.get("checkpoint") if record.task == "eval" else None
    path = use.get("path") if isinstance(use, dict) else None
    if not isinstance(path, str) or not path.strip():
        return None
    path = os.path.normpath(os.path.expanduser(path.strip()))
    return Path(os.path.dirname(path) if os.path.basename(path) == CKPT else path).as_posix()


def with_training_seeds(frame: pd.DataFrame) -> pd.DataFrame:
    """Eval records of a checkpoint whose fit record was collected take that fit's seed: the eval job's own
    ``seed`` (records written before eval took the checkpoint's) is not the model's training seed."""
    if frame.empty or not frame["checkpoint"].map(lambda v: not is_missing(v)).any():
        return frame
    fits = frame[frame["task"] == "fit"]
    trained = {Path(os.path.normpath(d)).as_posix(): s for d, s in zip(fits["run_dir"], fits["seed"], strict=True)
               if not is_missing(s)}
    frame = frame.copy()
    for index, ckpt in frame["checkpoint"].items():
        if not is_missing(ckpt) and ckpt in trained:
            frame.at[index, "seed"] = trained[ckpt]
    return frame


def _number(value):
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float("nan") if value is None else value
    return float(value)


def metric_sort_key(name: str) -> tuple:
    """Registered metrics in their column order (``metrics.registry``), mAD, then any other name."""
    order = column_order()
    return (order.index(name), "") if name in order else (len(order), name)


def _column_order(columns: Iterable[str]) -> list[str]:
    columns = set(columns)
    fixed = [c for c in FIXED_COLUMNS if c in columns]
    config = sorted(c for c in columns if c.startswith(("config.", CHOICE)))
    metric = sorted((c for c in columns if c.startswith("metric.")), key=lambda c: metric_sort_key(c[7:]))
    complexity = sorted(c for c in columns if c.startswith("complexity."))

    def per_class_key(c: str):
        category, name = c[len("per_class.") :].rsplit(".", 1)
        return (category, metric_sort_key(name))

    per_class = sorted((c for c in columns if c.startswith("per_class.")), key=per_class_key)
    rest = sorted(columns - set(fixed) - set(config) - set(metric) - set(complexity) - set(per_class))
    return [*fixed, *config, *metric, *complexity, *per_class, *rest]


def records_frame(rows: list[dict]) -> pd.DataFrame:
    """DataFrame from :func:`record_row` dicts, columns in a fixed order, rows sorted by ``run_dir``."""
    if not rows:
        return pd.DataFrame(columns=list(FIXED_COLUMNS))
    frame = pd.DataFrame(rows, dtype=object)  # object: config ints stay ints beside missing values
    frame = frame[_column_order(frame.columns)]
    for column in frame.columns:
        if column.startswith(("metric.", "complexity.", "per_class.")):
            numeric = pd.to_numeric(frame[column], errors="coerce")
            if numeric.notna().sum() == frame[column].map(lambda v: not is_missing(v)).sum():
                frame[column] = numeric.astype(float)
    frame = frame.sort_values("run_dir", kind="stable").reset_index(drop=True)
    for column in ("seed", "n_seeds"):
        frame[column] = frame[column].astype("Int64")
    frame["has_maps"] = frame["has_maps"].astype(bool)
    for column in ("run_dir", "status", "error", "task", "experiment", "swept", "checkpoint"):
        frame[column] = frame[column].map(lambda v: None if is_missing(v) else v).astype(object)
    return frame


def collect(paths: Iterable[str | Path]) -> Collection:
    """Find and load every record under ``paths``; unreadable files are kept aside with their reason."""
    paths = [Path(p) for p in paths]
    rows, unreadable = [], []
    for record_path in find_records(paths):
        try:
            record = read_record_file(record_path)
        except ValueError as exc:  # not JSON, or not a record (RecordError): listed, the rest renders
            unreadable.append((record_path.as_posix(), str(exc)))
            continue
        rows.append(record_row(record, record_path.parent))
    frame = with_training_seeds(records_frame(rows))
    return Collection(frame=frame, unreadable=unreadable, roots=[p.as_posix() for p in paths])


def failed_runs(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs that did not complete, with their one-line error."""
    if frame.empty:
        return frame
    return frame[frame["status"] != "completed"][["run_dir", "experiment", "seed", "status", "error"]]


def comparable_columns(frame: pd.DataFrame) -> list[str]:
    """Config columns that must agree for two runs to be averaged (all but the keys neutral for averaging)."""
    return [c for c in frame.columns if c.startswith("config.") and not is_ignored(c)]


def metric_names(frame: pd.DataFrame, prefix: str = "metric.") -> list[str]:
    names = [c[len(prefix) :] for c in frame.columns if c.startswith(prefix)]
    return sorted(names, key=metric_sort_key)


def undefined_of(frame: pd.DataFrame) -> dict[str, dict[str, str]]:
    """``{category: {metric: reason}}`` of the metrics some run of ``frame`` records as undefined."""
    out: dict[str, dict[str, str]] = {}
    for column in sorted(c for c in frame.columns if c.startswith("undefined.")):
        reasons = sorted({str(v) for v in frame[column] if not is_missing(v)})
        if reasons:
            category, name = column[len("undefined.") :].rsplit(".", 1)
            out.setdefault(category, {})[name] = "; ".join(reasons)
    return out


def per_class_columns(frame: pd.DataFrame) -> dict[str, list[tuple[str, str]]]:
    """``{category: [(metric, column), …]}`` for the per-class columns with any value in ``frame``."""
    out: dict[str, list[tuple[str, str]]] = {}
    for column in frame.columns:
        if not column.startswith("per_class.") or frame[column].isna().all():
            continue
        category, name = column[len("per_class.") :].rsplit(".", 1)
        out.setdefault(category, []).append((name, column))
    return {c: sorted(v, key=lambda t: metric_sort_key(t[0])) for c, v in sorted(out.items())}
