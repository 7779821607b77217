"""What other protocols would report, as tables beside ours (docs/metrics-and-protocols.md).

Two grids (:class:`reports.grid.Grid`, rendered like every other table):

* ``selection_grid(table)``: for any table whose runs kept a test curve (``eval.every``), each row's
  metrics at the last epoch (ours) and as the official and ADer selection rules would pick them from the
  curve (``reports.selection``), with each one's inflation over the last epoch. Marked "selected on the
  test set".
* ``protocol_grid(table)``: for a table that declares ``protocol:`` under ``hydra.sweeper.table``
  (``conf/experiment/protocol.yaml``): every convention (``metrics.conventions``) against every selection
  rule, each cell the mean ± std over seeds and, in brackets, its difference from ours (last epoch,
  exact) paired per seed.

Pure functions of the records (read from the runs' folders) and the table's declaration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from metrics.conventions.registry import legend
from metrics.registry import DEFAULT_METRICS, is_metric, label
from record.files import RECORD
from record.store import read_record_file
from reports.aggregate import Row, Table
from reports.grid import MISSING, Grid, fmt_delta
from reports.selection import DEFAULT_KEY, RULES, SELECTED_NOTE, record_selection
from reports.selection import LEGEND as RULE_LEGEND

RULE_NAMES = {"last": "last epoch", "official": "official best", "ader": "ADer max"}


@dataclass(frozen=True)
class ProtocolDecl:
    """``hydra.sweeper.table.protocol`` of an experiment file."""

    conventions: tuple[str, ...]
    rules: tuple[str, ...]
    metrics: tuple[str, ...]
    key: str


def protocol_decl(path: Path | None) -> ProtocolDecl | None:
    """The ``protocol:`` block of a table file, or None when it has none."""
    if path is None or not Path(path).is_file():
        return None
    data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    raw = (((data.get("hydra") or {}).get("sweeper") or {}).get("table") or {}).get("protocol")
    if not raw:
        return None
    return ProtocolDecl(conventions=tuple(raw.get("conventions") or ()), rules=tuple(raw.get("rules") or RULES),
                        metrics=tuple(raw.get("metrics") or DEFAULT_METRICS),
                        key=str(raw.get("key") or DEFAULT_KEY))


def _records(row: Row) -> list[tuple[int | None, dict]]:
    """(seed, record) of the row's completed runs (read through the record contract: a record it refuses is
    listed among the unreadable ones by ``reports.collect`` and left out here)."""
    out = []
    if row.runs is None or row.runs.empty:
        return out
    for _, run in row.runs.iterrows():
        try:
            record = read_record_file(Path(run["run_dir"]) / RECORD).raw
        except ValueError:
            continue
        seed = run["seed"]
        out.append((None if seed is None or (isinstance(seed, float) and math.isnan(seed)) else int(seed), record))
    return out


def _stats(values: list[float]) -> tuple[float, float] | None:
    xs = [v for v in values if v is not None and math.isfinite(v)]
    if not xs:
        return None
    mean = math.fsum(xs) / len(xs)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return mean, std


def _value_text(values: list[float], deltas: list[float] | None, decimals: int = 1) -> str:
    stats = _stats([v * 100 for v in values])
    if stats is None:
        return MISSING
    mean, std = stats
    text = f"{mean:.{decimals}f}" + (f" ± {std:.{decimals}f}" if len(values) > 1 else "")
    if deltas is not None:
        d = _stats([v * 100 for v in deltas])
        text += f" ({fmt_delta(d[0] if d else None, decimals)})"
    return text


def _selected(records, rule: str, convention: str | None, metric: str, key: str) -> list[tuple[int | None, float]]:
    out = []
    for seed, record in records:
        sel = record_selection(record, rule, convention, key)
        value = sel.values.get(metric) if sel is not None else None
        if value is not None and math.isfinite(value):
            out.append((seed, float(value)))
    return out


def _paired(values: list[tuple[int | None, float]], base: list[tuple[int | None, float]]) -> list[float]:
    ref = {seed: v for seed, v in base}
    return [v - ref[seed] for seed, v in values if seed in ref]


def selection_grid(table: Table, key: str = DEFAULT_KEY) -> Grid | None:
    """Ours at the last epoch beside the official and ADer selections, per row, for a table whose runs
    kept a test curve; None when none did."""
    metrics = [m for m in table.spec.metrics if is_metric(m.key)]
    rows, any_curve = [], False
    for row in table.rows:
        records = _records(row)
        with_curve = [(s, r) for s, r in records if (r.get("curve") or {}).get("points")]
        any_curve = any_curve or bool(with_curve)
        cells = [row.name, str(len(with_curve))]
        for metric in metrics:
            last = _selected(with_curve, "last", None, metric.key, key)
            cells.append(_value_text([v for _, v in last], None))
            for rule in ("official", "ader"):
                chosen = _selected(with_curve, rule, None, metric.key, key)
                cells.append(_value_text([v for _, v in chosen], _paired(chosen, last)))
        rows.append(cells)
    if not any_curve:
        return None
    columns = ["row", "curves"]
    for metric in metrics:
        columns += [f"{metric.label} last", f"{metric.label} official (Δ)", f"{metric.label} ADer (Δ)"]
    caption = (f"{table.spec.title.rstrip('.')}: the official and ADer figures are {SELECTED_NOTE} "
               f"(mean ± std over the seeds that kept a curve, percent; (Δ) = minus the last epoch, paired "
               f"per seed).")
    notes = [f"{RULE_NAMES[r]}: {RULE_LEGEND[r]}" for r in RULES]
    return Grid(key=f"{table.spec.key}-selection", title=f"{table.spec.key}: {SELECTED_NOTE}", columns=columns,
                rows=rows, caption=caption, notes=notes, n_label_columns=1)


def protocol_grid(table: Table) -> Grid | None:
    """Every convention against every selection rule for a table that declares ``protocol:``."""
    decl = protocol_decl(table.spec.path)
    if decl is None:
        return None
    records = [rec for row in table.rows for rec in _records(row)]
    if not records:
        return None
    seeds = sorted({s for s, _ in records if s is not None})
    base = {m: _selected(records, "last", None, m, decl.key) for m in decl.metrics}
    rows = []
    for convention in (None, *decl.conventions):
        for rule in decl.rules:
            cells = [convention or "ours", RULE_NAMES.get(rule, rule)]
            for metric in decl.metrics:
                values = _selected(records, rule, convention, metric, decl.key)
                mine = convention is None and rule == "last"
                cells.append(_value_text([v for _, v in values], None if mine else _paired(values, base[metric])))
            rows.append(cells)
    columns = ["convention", "selection", *(label(m) for m in decl.metrics)]
    caption = (f"{table.spec.title.rstrip('.')}: {len(records)} run(s), seeds {', '.join(map(str, seeds)) or '—'}; "
               "mean ± std over the seeds (percent) and, in brackets, the difference from ours at the last epoch "
               f"paired per seed. Every row but ours / last epoch is another protocol; rows other than 'last "
               f"epoch' are {SELECTED_NOTE}.")
    notes = [legend(c) for c in ("ours", *decl.conventions)]
    notes += [f"{RULE_NAMES.get(r, r)}: {RULE_LEGEND[r]}" for r in decl.rules if r in RULE_LEGEND]
    return Grid(key=f"{table.spec.key}-protocols", title=f"{table.spec.key}: every convention x every selection rule",
                columns=columns, rows=rows, caption=caption, notes=notes, n_label_columns=2)


def protocol_grids(table: Table) -> list[Grid]:
    """The grids this module adds for ``table`` (none when its runs kept no curve and it declares no
    protocol)."""
    grids = [protocol_grid(table)]
    if grids[0] is None:
        grids = [selection_grid(table)]
    return [g for g in grids if g is not None]
