"""Stage 1 of the report, the declaration: one :class:`TableSpec` per table, read from
``conf/experiment/<experiment>.yaml`` (``hydra.sweeper.table``), with its rows (:class:`RowSpec`), the
metrics it shows (:class:`MetricSpec`) and the paper's numbers.

The same declaration drives the sweep (``hydra_plugins/uniad_bench_sweeper``: rows x seeds) and the
report: the row each run belongs to, the label cells, the paper's numbers and the default row that
every other row is compared with. Keys of a table (``hydra.sweeper.table``)::

    key: S4                      # the table's name in headings and file names
    title: Loss function
    columns: [loss]              # label columns
    metrics: [image_auroc, pixel_auroc]   # value columns (names of metric_spec)
    default: mse                 # id of the default row (the paper's choice); the significance reference
    paper: {dataset: mvtec, source: "seed 000, Table S4"}   # omit when the paper has no such table
    order: 4                     # position among the tables of a report (optional)
    varies: [model.decoder]      # config keys that follow the rows' overrides (optional)
    keys: [model, model.nma]     # the keys that tell rows apart (optional; default: those every row overrides)
    definitions: ...             # the legend's first sentence, when not the default (optional)
    notes: [...]                 # lines printed under the table (optional)
    mean_row: false              # add the mean over the rows (optional)
    rows:
      - id: mse                  # label: MSE (one label column) or cells: [...] (one per column)
        label: MSE
        overrides: [loss=mse]    # what makes the row; none: a row of the paper's numbers only
        paper: {image_auroc: 96.5, pixel_auroc: 96.8}

A run belongs to the row whose overrides its resolved config satisfies, on the keys that every row
overrides (a row may set more, e.g. a method's own settings): ``group=option`` means the run was composed
with that option (``choice.<group>``, from the record's group choices; ``conf/<group>/<option>.yaml``
must exist), ``a.b=value`` means ``config.a.b == value`` (YAML-parsed). Runs that match no row get a row of their own
(:meth:`TableSpec.row_for`). Runs outside any declared experiment go to a generic table
(:func:`generic_table`): one row per combination of swept overrides, ours only.

Rows of different methods beside variants of one (UniAD without NMA beside Dinomaly and PatchCore) name their
keys: with ``keys``, a row that does not override a key holds runs with any value of it, or without it (a
model node without ``nma``), and of the declared rows that a run satisfies the one that overrides most keys
holds it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from metrics.registry import DEFAULT_METRICS, is_metric, label, metric
from reports.collect import CHOICE, is_missing, key_name

CONF = Path(__file__).resolve().parent.parent / "conf"
EXPERIMENTS = CONF / "experiment"
DEFAULT_ORDER = 100
ANY = "(any)"  # a row's value of a declared key it does not override (``keys``)
UNSET = "(unset)"  # a run's value of a declared key its config lacks (``keys``)


# --- metrics ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MetricSpec:
    """One measured quantity: where it is in the run frame and how a table shows it."""

    key: str  # the metric's name in the record and in the paper's numbers
    label: str  # column label in the tables ("Det.")
    column: str  # run-frame column ("metric.image_auroc")
    scale: float = 100.0  # record value x scale = shown value (fractions -> percent)
    decimals: int = 1
    higher_is_better: bool = True
    with_std: bool = True  # show "mean ± std (n=k)"; False: deterministic counts, shown as a plain number
    bold: bool = True  # mark the best value of the column
    unit: str = "%"


GFLOPS = MetricSpec("gflops", "GFLOPs", "complexity.gflops", 1.0, 2, False, False, True, "G")
LEARNABLE = MetricSpec(
    "learnable_params_m", "Learnable params (M)", "complexity.learnable_params", 1e-6, 2, False, False, True, "M"
)
BACKBONE = MetricSpec(
    "backbone_params_m", "Backbone params (M)", "complexity.backbone_params", 1e-6, 1, False, False, False, "M"
)
STORED = MetricSpec(
    "stored_numbers_m",
    "Stored statistics (M numbers)",
    "complexity.stored_numbers",
    1e-6,
    2,
    False,
    False,
    True,
    "M",
)
# the legend's first sentence: the default metrics' labels and definitions (metrics.registry)
DEFINITIONS = (
    ", ".join(f"{metric(n).table_label} = {metric(n).definition}" for n in DEFAULT_METRICS)
    + ", each the mean over categories, in %; "
    "ours = mean ± sample std (ddof=1) over seeds (n = completed seeds); "
    "Δ = ours − paper in points (from the rounded values)."
)
GENERIC_DEFINITIONS = (
    "metrics in %, mean ± sample std (ddof=1) over seeds (n = completed seeds); "
    "rows: the overrides of the runs without the seed."
)


def metric_spec(name: str) -> MetricSpec:
    """A spec for any ``metrics.mean`` key (used by the generic and per-class tables): a registered
    metric is labelled as the registry says (its paper label when it has one), mAD as mAD."""
    for spec in (GFLOPS, LEARNABLE, BACKBONE, STORED):
        if name == spec.key:
            return spec
    return MetricSpec(name, metric(name).table_label if is_metric(name) else label(name), f"metric.{name}")


# --- rows and tables ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowSpec:
    """One row of a table: how runs are matched to it, its label cells and the paper's numbers."""

    id: str  # row id in the declaration, the paper's numbers and the notes
    key: tuple  # the config values (TableSpec.key_columns) that identify the row's runs
    labels: tuple[str, ...]  # the label cells, one per TableSpec.label_columns
    name: str  # human-readable name used in notes
    short: str | None = None  # label in figures (default: id)
    overrides: tuple[str, ...] = ()  # what makes the row in a sweep
    paper: dict = field(default_factory=dict, hash=False)  # {metric: the paper's number}
    paper_source: str | None = None
    paper_only: bool = False  # a row of the paper with no run of ours (other methods of Table S7)


@dataclass(frozen=True)
class TableSpec:
    """A declared table (or the generic table of an undeclared experiment)."""

    experiment: str | None
    key: str  # "S2" (table name in headings, the paper's numbers and file names)
    title: str
    label_columns: tuple[str, ...]
    key_columns: tuple[str, ...]  # run-frame columns whose values identify the row
    rows: tuple[RowSpec, ...]
    metrics: tuple[MetricSpec, ...]
    row_prefixes: tuple[str, ...] = ()  # config keys that legitimately differ between rows
    has_paper: bool = True
    paper_dataset: str | None = "mvtec"  # the paper's dataset for this table (None: no dataset involved)
    paper_source: str | None = None
    paper_mean: dict = field(default_factory=dict, hash=False)  # the paper's mean row (mean_row tables)
    mean_row: bool = False  # add the mean over the declared rows (CIFAR-10 splits)
    default_row: str | None = None  # id of the row every other row is compared with (significance)
    definitions: str = DEFINITIONS
    notes: tuple[str, ...] = ()  # lines printed under the table, from its declaration
    order: int = DEFAULT_ORDER
    n_seeds: int | None = None
    seeds: tuple[int, ...] = ()
    path: Path | None = None  # the experiment file (None: the generic table)
    optional_columns: tuple[str, ...] = ()  # key columns that some rows leave to any value (``keys``)

    @property
    def generic(self) -> bool:
        return self.path is None

    def key_of(self, run: pd.Series) -> tuple | None:
        """The row key of one run (a line of the run frame): the key of the declared row that holds it, else
        its values; None when a key column that every row overrides is missing."""
        values = [run.get(c) for c in self.key_columns]
        if any(is_missing(v) for c, v in zip(self.key_columns, values, strict=True) if c not in self.optional_columns):
            return None
        key = tuple(UNSET if is_missing(v) else _tuples(_plain(v)) for v in values)
        if not self.optional_columns:
            return key
        held = [r for r in self.rows
                if not r.paper_only and all(w in (ANY, v) for w, v in zip(r.key, key, strict=True))]
        return max(held, key=lambda r: sum(w != ANY for w in r.key)).key if held else key

    def row_for(self, key: tuple) -> RowSpec:
        """The declared row of ``key``, or a row named by the key for runs that match none."""
        for row in self.rows:
            if row.key == key:
                return row
        if self.generic:
            text = key[0] or "(defaults)"
            return RowSpec(text, key, (text,), text, short=text)
        pairs = [f"{key_name(c)}={_text(v)}" for c, v in zip(self.key_columns, key, strict=True)]
        name = ", ".join(pairs)
        label = _text(key[0]) if len(key) == 1 else name
        return RowSpec(name, key, (label, *[""] * (len(self.label_columns) - 1)), name, short=label)


def generic_table(experiment: str | None, metrics: tuple[MetricSpec, ...]) -> TableSpec:
    """One row per distinct swept-override combination, ours only (no paper numbers)."""
    return TableSpec(
        experiment=experiment,
        key=f"exp-{experiment}" if experiment else "no-experiment",
        title=f"Runs of experiment={experiment}" if experiment else "Runs without an experiment",
        label_columns=("overrides",),
        key_columns=("swept",),
        rows=(),
        metrics=metrics,
        paper_dataset=None,
        has_paper=False,
        definitions=GENERIC_DEFINITIONS,
    )


def _plain(value):
    if hasattr(value, "item") and not isinstance(value, tuple):
        value = value.item()
    return value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def _text(value) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# --- parsing the experiment files ---------------------------------------------------------------------
def parse_value(text: str):
    """An override's value as the resolved config holds it (lists become tuples, as in reports.collect)."""
    return _tuples(yaml.safe_load(text))


def _match(override: str) -> tuple[str, object]:
    """``loss=mse`` -> ``("choice.loss", "mse")``; ``model.nma=true`` -> ``("config.model.nma", True)``."""
    key, _, value = override.partition("=")
    key = key.lstrip("+~")
    if "." not in key and (CONF / key).is_dir():
        return f"{CHOICE}{key}", value
    return f"config.{key}", parse_value(value)


def _prefix(override: str) -> str:
    key = override.partition("=")[0].lstrip("+~")
    return f"config.{key}"


def _fail(path: Path, message: str):
    raise ValueError(f"{path.name}: {message}")


def _check_group_option(path: Path, override: str) -> None:
    key, _, value = override.partition("=")
    key = key.lstrip("+~")
    if "." in key or not (CONF / key).is_dir():
        return
    option = CONF / key / f"{value}.yaml"
    if not option.is_file():
        _fail(path, f"row override {override}: no {option.relative_to(CONF.parent)}")


def _parse_row(path: Path, raw: dict, columns: tuple[str, ...], metrics: set[str]) -> RowSpec:
    row_id = str(raw["id"])
    if "cells" in raw:
        cells = tuple(str(c) for c in raw["cells"])
    else:
        cells = (str(raw.get("label", row_id)),)
    if len(cells) != len(columns):
        _fail(path, f"row {row_id} has {len(cells)} label cell(s) for {len(columns)} column(s) {list(columns)}")
    paper = {str(k): v for k, v in (raw.get("paper") or {}).items()}
    unknown = sorted(set(paper) - metrics)
    if unknown:
        _fail(path, f"row {row_id}: paper numbers for {unknown}, which are not among metrics")
    overrides = tuple(str(o) for o in raw.get("overrides") or ())
    for override in overrides:
        if "=" not in override:
            _fail(path, f"row {row_id}: override {override!r} is not key=value")
        _check_group_option(path, override)
    return RowSpec(
        id=row_id,
        key=("paper:" + row_id,),  # the key of a row with runs is set once the table's key columns are known
        labels=cells,
        name=str(raw.get("name", cells[0] if len(cells) == 1 else row_id)),
        short=str(raw["short"]) if raw.get("short") is not None else None,
        overrides=overrides,
        paper=paper,
        paper_source=raw.get("paper_source"),
        paper_only=not overrides,
    )


def parse_table(experiment_file: Path) -> TableSpec | None:
    """The declaration in one experiment file (None when it declares no table); ValueError when malformed."""
    path = Path(experiment_file)
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    sweeper = (data.get("hydra") or {}).get("sweeper") or {}
    table = sweeper.get("table")
    if table is None:
        return None
    for key in ("key", "title", "columns", "metrics", "rows"):
        if not table.get(key):
            _fail(path, f"hydra.sweeper.table needs {key}")
    columns = tuple(str(c) for c in table["columns"])
    metrics = tuple(str(m) for m in table["metrics"])
    rows, seen = [], set()
    for raw in table["rows"]:
        if "id" not in raw:
            _fail(path, f"a row without an id: {raw}")
        if str(raw["id"]) in seen:
            _fail(path, f"row id {raw['id']} appears twice")
        seen.add(str(raw["id"]))
        rows.append(_parse_row(path, raw, columns, set(metrics)))
    if table.get("mean_row") and "mean" in seen:
        _fail(path, "row id mean is taken by the mean row (mean_row: true): rename the row")
    run_rows = [r for r in rows if not r.paper_only]
    key_sets = [{_match(o)[0] for o in r.overrides} for r in run_rows]
    shared = set.intersection(*key_sets) if key_sets else set()
    if key_sets and not shared:
        _fail(path, "the rows share no overridden key to tell their runs apart (e.g. every row sets model=...)")
    declared = {_match(f"{k}=")[0] for k in table.get("keys") or ()}
    unused = sorted(key_name(c) for c in declared - set.union(*key_sets)) if key_sets else []
    if unused:
        _fail(path, f"keys {unused}: no row overrides them")
    key_columns = tuple(sorted(shared | declared))
    rows = [r if r.paper_only else _keyed(r, key_columns) for r in rows]
    keys = [r.key for r in rows if not r.paper_only]
    if len(set(keys)) != len(keys):
        shared_keys = ", ".join(map(key_name, key_columns))
        _fail(path, f"two rows have the same values of {shared_keys}: the report cannot tell them apart")
    paper = table.get("paper")
    varies = {f"config.{k}" for k in table.get("varies") or ()}
    default = str(table["default"]) if table.get("default") is not None else None
    if default is not None and default not in {r.id for r in run_rows}:
        _fail(path, f"default: {default} is not the id of a row with overrides")
    return TableSpec(
        experiment=str(data.get("experiment") or path.stem),
        key=str(table["key"]),
        title=str(table["title"]),
        label_columns=columns,
        key_columns=key_columns,
        rows=tuple(rows),
        metrics=tuple(metric_spec(m) for m in metrics),
        row_prefixes=tuple(sorted({_prefix(o) for r in run_rows for o in r.overrides} | varies)),
        has_paper=paper is not None,
        paper_dataset=(paper or {}).get("dataset"),
        paper_source=(paper or {}).get("source"),
        paper_mean=dict((paper or {}).get("mean") or {}),
        mean_row=bool(table.get("mean_row", False)),
        default_row=default,
        definitions=table.get("definitions") or DEFINITIONS,
        notes=tuple(str(n) for n in table.get("notes") or ()),
        order=int(table.get("order", DEFAULT_ORDER)),
        n_seeds=data.get("n_seeds"),
        seeds=tuple(int(s) for s in str((sweeper.get("params") or {}).get("seed", "")).split(",") if s.strip()),
        path=path,
        optional_columns=tuple(c for c in key_columns if c not in shared),
    )


def _keyed(row: RowSpec, key_columns: tuple[str, ...]) -> RowSpec:
    """The row with its key: the values of ``key_columns`` its overrides give (``ANY`` for a declared key that
    the row leaves to any value)."""
    values = dict(_match(o) for o in row.overrides)
    key = tuple(_tuples(values[c]) if c in values else ANY for c in key_columns)
    return RowSpec(row.id, key, row.labels, row.name, row.short, row.overrides, row.paper, row.paper_source)


@functools.cache
def _load(folder: str) -> tuple[TableSpec, ...]:
    specs = [s for p in sorted(Path(folder).glob("*.yaml")) if (s := parse_table(p)) is not None]
    names = [s.key for s in specs]
    duplicated = sorted({k for k in names if names.count(k) > 1})
    if duplicated:
        raise ValueError(f"table key(s) {duplicated} declared by more than one experiment file")
    return tuple(sorted(specs, key=lambda s: (s.order, s.key)))


def table_specs(folder: str | Path | None = None) -> tuple[TableSpec, ...]:
    """Every declared table, in report order (``order``, then key)."""
    return _load(str(folder or EXPERIMENTS))


def specs_by_experiment(folder: str | Path | None = None) -> dict[str, TableSpec]:
    """``{experiment: TableSpec}`` of every declared table, in report order."""
    return {spec.experiment: spec for spec in table_specs(folder)}
