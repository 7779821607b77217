"""The tables, declared once each in ``conf/experiment/<experiment>.yaml`` under ``hydra.sweeper.table``.

The same declaration drives the sweep (``hydra_plugins/uniad_bench_sweeper``: rows x seeds) and, here,
the report: the row each run belongs to, the label cells, the paper's numbers and the default row that
every other row is compared with. Keys of a table (``hydra.sweeper.table``)::

    key: S4                      # the table's name in headings and file names
    title: Loss function
    columns: [loss]              # label columns
    metrics: [image_auroc, pixel_auroc]   # value columns (reports.layouts.metric_spec names)
    default: mse                 # id of the default row (the paper's choice); the significance reference
    paper: {dataset: mvtec, source: "seed 000, Table S4"}   # omit when the paper has no such table
    order: 4                     # position among the tables of a report (optional)
    varies: [model.decoder]      # config keys that follow the rows' overrides (optional)
    definitions: ...             # the legend's first sentence, when not the default (optional)
    notes: [...]                 # lines printed under the table (optional)
    mean_row: false              # add the mean over the rows (optional)
    rows:
      - id: mse                  # label: MSE (one label column) or cells: [...] (one per column)
        label: MSE
        overrides: [loss=mse]    # what makes the row; none: a row of the paper's numbers only
        paper: {image_auroc: 96.5, pixel_auroc: 96.8}

A run belongs to the row whose overrides its resolved config satisfies, on the keys that every row
overrides (a row may set more, e.g. a method's own settings): ``group=option`` means
``config.<group>.name == option`` (checked against ``conf/<group>/<option>.yaml``), ``a.b=value``
means ``config.a.b == value`` (YAML-parsed). Runs that match no row get a row of their own.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

CONF = Path(__file__).resolve().parent.parent / "conf"
EXPERIMENTS = CONF / "experiment"
DEFAULT_ORDER = 100


@dataclass(frozen=True)
class RowDecl:
    id: str
    cells: tuple[str, ...]
    name: str
    short: str | None
    overrides: tuple[str, ...]
    paper: dict
    paper_source: str | None

    @property
    def paper_only(self) -> bool:
        return not self.overrides


@dataclass(frozen=True)
class TableDecl:
    experiment: str
    key: str
    title: str
    columns: tuple[str, ...]
    metrics: tuple[str, ...]
    default: str | None
    rows: tuple[RowDecl, ...]
    key_columns: tuple[str, ...]  # run-frame columns that identify a row
    row_prefixes: tuple[str, ...]  # config columns that legitimately differ between rows
    has_paper: bool
    paper_dataset: str | None
    paper_source: str | None
    paper_mean: dict
    order: int
    definitions: str | None
    notes: tuple[str, ...]
    mean_row: bool
    n_seeds: int | None
    seeds: tuple[int, ...]
    path: Path

    def row_key(self, row: RowDecl) -> tuple:
        """The values of :attr:`key_columns` (the keys every row sets) that the row's overrides give."""
        values = dict(_match(o) for o in row.overrides)
        return tuple(values[c] for c in self.key_columns)


def parse_value(text: str):
    """An override's value as the resolved config holds it (lists become tuples, as in reports.collect)."""
    value = yaml.safe_load(text)
    return _tuples(value)


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _match(override: str) -> tuple[str, object]:
    """``loss=mse`` -> ``("config.loss.name", "mse")``; ``model.nma=true`` -> ``("config.model.nma", True)``."""
    key, _, value = override.partition("=")
    key = key.lstrip("+~")
    if "." not in key and (CONF / key).is_dir():
        return f"config.{key}.name", value
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
    name = (yaml.safe_load(option.read_text(encoding="utf-8")) or {}).get("name")
    if name != value:
        _fail(path, f"row override {override}: {option.name} must set name: {value} (runs are matched on it)")


def parse_table(experiment_file: Path) -> TableDecl | None:
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
    rows, seen = [], set()
    for raw in table["rows"]:
        if "id" not in raw:
            _fail(path, f"a row without an id: {raw}")
        row_id = str(raw["id"])
        if row_id in seen:
            _fail(path, f"row id {row_id} appears twice")
        seen.add(row_id)
        if "cells" in raw:
            cells = tuple(str(c) for c in raw["cells"])
        else:
            cells = (str(raw.get("label", row_id)),)
        if len(cells) != len(columns):
            _fail(path, f"row {row_id} has {len(cells)} label cell(s) for {len(columns)} column(s) {list(columns)}")
        paper = {str(k): v for k, v in (raw.get("paper") or {}).items()}
        unknown = sorted(set(paper) - {str(m) for m in table["metrics"]})
        if unknown:
            _fail(path, f"row {row_id}: paper numbers for {unknown}, which are not among metrics")
        overrides = tuple(str(o) for o in raw.get("overrides") or ())
        for override in overrides:
            if "=" not in override:
                _fail(path, f"row {row_id}: override {override!r} is not key=value")
            _check_group_option(path, override)
        rows.append(
            RowDecl(
                id=row_id,
                cells=cells,
                name=str(raw.get("name", cells[0] if len(cells) == 1 else row_id)),
                short=str(raw["short"]) if raw.get("short") is not None else None,
                overrides=overrides,
                paper=paper,
                paper_source=raw.get("paper_source"),
            )
        )
    run_rows = [r for r in rows if not r.paper_only]
    key_sets = [{_match(o)[0] for o in r.overrides} for r in run_rows]
    shared = set.intersection(*key_sets) if key_sets else set()
    if key_sets and not shared:
        _fail(path, "the rows share no overridden key to tell their runs apart (e.g. every row sets model=...)")
    key_columns = tuple(sorted(shared))
    paper = table.get("paper")
    varies = {f"config.{k}" for k in table.get("varies") or ()}
    default = str(table["default"]) if table.get("default") is not None else None
    if default is not None and default not in {r.id for r in run_rows}:
        _fail(path, f"default: {default} is not the id of a row with overrides")
    decl = TableDecl(
        experiment=str(data.get("experiment") or path.stem),
        key=str(table["key"]),
        title=str(table["title"]),
        columns=columns,
        metrics=tuple(str(m) for m in table["metrics"]),
        default=default,
        rows=tuple(rows),
        key_columns=key_columns,
        row_prefixes=tuple(sorted({_prefix(o) for r in run_rows for o in r.overrides} | varies)),
        has_paper=paper is not None,
        paper_dataset=(paper or {}).get("dataset"),
        paper_source=(paper or {}).get("source"),
        paper_mean=dict((paper or {}).get("mean") or {}),
        order=int(table.get("order", DEFAULT_ORDER)),
        definitions=table.get("definitions"),
        notes=tuple(str(n) for n in table.get("notes") or ()),
        mean_row=bool(table.get("mean_row", False)),
        n_seeds=data.get("n_seeds"),
        seeds=tuple(int(s) for s in str((sweeper.get("params") or {}).get("seed", "")).split(",") if s.strip()),
        path=path,
    )
    keys = [decl.row_key(r) for r in run_rows]
    if len(set(keys)) != len(keys):
        _fail(path, f"two rows have the same values of {', '.join(key_columns)}: the report cannot tell them apart")
    return decl


@functools.cache
def _load(folder: str) -> tuple[TableDecl, ...]:
    decls = [d for p in sorted(Path(folder).glob("*.yaml")) if (d := parse_table(p)) is not None]
    names = [d.key for d in decls]
    duplicated = sorted({k for k in names if names.count(k) > 1})
    if duplicated:
        raise ValueError(f"table key(s) {duplicated} declared by more than one experiment file")
    return tuple(sorted(decls, key=lambda d: (d.order, d.key)))


def table_decls(folder: str | Path | None = None) -> tuple[TableDecl, ...]:
    """Every declared table, in report order (``order``, then key)."""
    return _load(str(folder or EXPERIMENTS))


def paper_frame(decls: tuple[TableDecl, ...] | None = None) -> pd.DataFrame:
    """The paper's numbers of every table, long form: table, row, metric, value, unit, source, text."""
    from reports.layouts import metric_spec

    lines = []
    for decl in decls if decls is not None else table_decls():
        entries = [(r.id, r.paper, r.paper_source) for r in decl.rows]
        if decl.paper_mean:
            entries.append(("mean", decl.paper_mean, None))
        for row_id, numbers, source in entries:
            for metric, value in numbers.items():
                lines.append(
                    {
                        "table": decl.key,
                        "row": row_id,
                        "metric": metric,
                        "value": float(value),
                        "unit": metric_spec(metric).unit,
                        "source": source or decl.paper_source or "",
                        "text": str(value),
                    }
                )
    return pd.DataFrame(lines, columns=["table", "row", "metric", "value", "unit", "source", "text"])
