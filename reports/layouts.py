"""Table layouts: which config values identify each row, which columns each table has.

Every table is declared in its experiment file (:mod:`reports.table_files`); :func:`layout_of` turns a
declaration into a :class:`Layout`. Rows are identified from ``config`` values (never by parsing override
strings). A run whose key is not one of the declared rows still gets a row (after them, named by its key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from reports.collect import is_missing
from reports.table_files import TableDecl, table_decls


@dataclass(frozen=True)
class MetricSpec:
    """One measured quantity: where it is in the run frame and how a table shows it."""

    key: str  # the paper CSV's metric name
    label: str  # column label in the tables ("Det.")
    column: str  # run-frame column ("metric.image_auroc")
    scale: float = 100.0  # record value x scale = shown value (fractions -> percent)
    decimals: int = 1
    higher_is_better: bool = True
    with_std: bool = True  # show "mean ± std (n=k)"; False: deterministic counts, shown as a plain number
    bold: bool = True  # mark the best value of the column
    unit: str = "%"


DET = MetricSpec("image_auroc", "Det.", "metric.image_auroc")
LOC = MetricSpec("pixel_auroc", "Loc.", "metric.pixel_auroc")
GFLOPS = MetricSpec("gflops", "GFLOPs", "complexity.gflops", 1.0, 2, False, False, True, "G")
LEARNABLE = MetricSpec(
    "learnable_params_m",
    "Learnable params (M)",
    "complexity.learnable_params",
    1e-6,
    2,
    False,
    False,
    True,
    "M",
)
BACKBONE = MetricSpec(
    "backbone_params_m",
    "Backbone params (M)",
    "complexity.backbone_params",
    1e-6,
    1,
    False,
    False,
    False,
    "M",
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
METRIC_LABELS = {
    "image_auroc": "image AUROC",
    "pixel_auroc": "pixel AUROC",
    "image_ap": "image AP",
    "image_f1_max": "image F1-max",
    "pixel_ap": "pixel AP",
    "pixel_f1_max": "pixel F1-max",
    "pixel_aupro": "pixel AUPRO",
}
DEFINITIONS = (
    "Det. = image-level AUROC, Loc. = pixel-level AUROC, each the mean over categories, in %; "
    "ours = mean ± sample std (ddof=1) over seeds (n = completed seeds); "
    "Δ = ours − paper in points (from the rounded values)."
)


def metric_spec(name: str) -> MetricSpec:
    """A spec for any ``metrics.mean`` key (used by the generic and per-class tables)."""
    if name == "image_auroc":
        return DET
    if name == "pixel_auroc":
        return LOC
    for spec in (GFLOPS, LEARNABLE, BACKBONE, STORED):
        if name == spec.key:
            return spec
    return MetricSpec(name, METRIC_LABELS.get(name, name), f"metric.{name}")


@dataclass(frozen=True)
class RowSpec:
    id: str  # row id in the paper CSV (and in notes)
    key: tuple  # the config values that identify the row
    labels: tuple[str, ...]  # the label cells, one per Layout.label_columns
    name: str  # human-readable name used in notes
    paper_row: str | None = None  # paper CSV row (default: id)
    paper_only: bool = False  # a row of the paper with no run of ours (other methods of Table S7)
    short: str | None = None  # label in figures (default: id)


@dataclass(frozen=True)
class Layout:
    experiment: str | None
    key: str  # "S2" (table name in headings, the paper's numbers and file names)
    title: str
    label_columns: tuple[str, ...]
    key_columns: tuple[str, ...]  # run-frame columns whose values identify the row
    rows: tuple[RowSpec, ...]
    metrics: tuple[MetricSpec, ...]
    describe: Callable[[tuple], RowSpec]  # a row spec for a key that is none of the declared rows
    row_prefixes: tuple[str, ...] = ()  # config keys that legitimately differ between rows
    key_transform: Callable[[tuple], tuple] = field(default=lambda key: key)
    paper_dataset: str | None = "mvtec"  # the paper's dataset for this table (None: no dataset involved)
    mean_row: bool = False  # add the mean over the paper's rows (CIFAR-10 splits)
    definitions: str = DEFINITIONS
    has_paper: bool = True
    default_row: str | None = None  # id of the row every other row is compared with (significance)
    notes: tuple[str, ...] = ()  # lines printed under the table, from its declaration

    def key_of(self, run: pd.Series) -> tuple | None:
        values = tuple(run.get(c) for c in self.key_columns)
        if any(is_missing(v) for v in values):
            return None
        return self.key_transform(tuple(_plain(v) for v in values))

    def spec_for(self, key: tuple) -> RowSpec:
        for spec in self.rows:
            if spec.key == key:
                return spec
        return self.describe(key)


def _plain(value):
    if hasattr(value, "item") and not isinstance(value, tuple):
        value = value.item()
    return value


def layout_of(decl: TableDecl) -> Layout:
    """The layout of a table declared in its experiment file (:mod:`reports.table_files`)."""
    rows = []
    for row in decl.rows:
        key = decl.row_key(row) if not row.paper_only else ("paper:" + row.id,)
        rows.append(RowSpec(row.id, key, row.cells, row.name, paper_only=row.paper_only, short=row.short))
    n_labels = len(decl.columns)

    def describe(key: tuple) -> RowSpec:
        """A row for runs whose key is none of the declared rows: named by its key values."""
        pairs = [f"{c[len('config.') :]}={_text(v)}" for c, v in zip(decl.key_columns, key, strict=True)]
        name = ", ".join(pairs)
        label = _text(key[0]) if len(key) == 1 else name
        return RowSpec(name, key, (label, *[""] * (n_labels - 1)), name, paper_row=None, short=label)

    return Layout(
        experiment=decl.experiment,
        key=decl.key,
        title=decl.title,
        label_columns=decl.columns,
        key_columns=decl.key_columns,
        rows=tuple(rows),
        metrics=tuple(metric_spec(m) for m in decl.metrics),
        describe=describe,
        row_prefixes=decl.row_prefixes,
        key_transform=lambda key: tuple(_tuples(v) for v in key),
        paper_dataset=decl.paper_dataset,
        mean_row=decl.mean_row,
        definitions=decl.definitions or DEFINITIONS,
        has_paper=decl.has_paper,
        default_row=decl.default,
        notes=decl.notes,
    )


def _text(value) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(_text(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list | tuple) else value


def layouts(folder=None) -> dict[str, Layout]:
    """``{experiment: Layout}`` of every declared table, in report order."""
    return {decl.experiment: layout_of(decl) for decl in table_decls(folder)}


def generic_layout(experiment: str | None, metrics: tuple[MetricSpec, ...]) -> Layout:
    """One row per distinct swept-override combination, ours only (no paper numbers)."""

    def describe(key: tuple) -> RowSpec:
        text = key[0] or "(defaults)"
        return RowSpec(text, key, (text,), text, paper_row=None, short=text)

    title = f"Runs of experiment={experiment}" if experiment else "Runs without an experiment"
    return Layout(
        experiment=experiment,
        key=f"exp-{experiment}" if experiment else "no-experiment",
        title=title,
        label_columns=("overrides",),
        key_columns=("swept",),
        rows=(),
        metrics=metrics,
        describe=describe,
        paper_dataset=None,
        has_paper=False,
        definitions=(
            "metrics in %, mean ± sample std (ddof=1) over seeds (n = completed seeds); "
            "rows: the overrides of the runs without the seed."
        ),
    )
