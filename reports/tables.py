"""Aggregate runs into the paper's tables (mean ± std over seeds beside the paper) and render Markdown.

Everything here is a pure function of the run DataFrame of :mod:`reports.collect` and the paper
DataFrame of :mod:`reports.paper`: :func:`build_tables` gives :class:`Table` objects (numbers and
notes), :func:`table_grids` turns one into display grids (strings + which cells are best), and
:func:`grid_markdown` renders a grid.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import pandas as pd

from reports.collect import comparable_columns, is_missing, metric_names, metric_sort_key, per_class_columns
from reports.layouts import (
    GFLOPS,
    LEARNABLE,
    METRIC_LABELS,
    Layout,
    MetricSpec,
    RowSpec,
    generic_layout,
    layouts,
    metric_spec,
)
from reports.paper import paper_lookup, paper_text, paper_value
from reports.stats import ALPHA, NOT_SIGNIFICANT, NOT_TESTABLE, PairedTest, paired_t_test, t_interval

MISSING = "—"
# Marks after a cell compared with its table's default row (issue 12, point 4); the legend says what they mean.
NOT_SIGNIFICANT_MARK, NOT_TESTABLE_MARK = "†", "‡"
TABULATED_TASKS = ("fit", "eval", "complexity")


# --- numbers --------------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One aggregated quantity in display units (percent, G, M)."""

    mean: float | None = None
    std: float | None = None
    n: int = 0
    paper: float | None = None
    paper_text: str | None = None
    ci: tuple[float, float] | None = None  # 95% t-interval of the mean over seeds (n >= 2)
    test: PairedTest | None = None  # this row vs the table's default row, over their shared seeds


def aggregate(values, scale: float = 1.0) -> Cell:
    """Mean, sample std (ddof=1; 0.0 for a single value) and 95% t-interval of the non-missing values,
    times ``scale``."""
    xs = [float(v) * scale for v in values if not is_missing(v)]
    if not xs:
        return Cell()
    mean = math.fsum(xs) / len(xs)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return Cell(mean=mean, std=std, n=len(xs), ci=t_interval(xs))


@dataclass
class Row:
    spec: RowSpec
    variant: str = ""  # "" or the config values that set this row's runs apart from other runs of the row
    cells: dict[str, Cell] = field(default_factory=dict)  # MetricSpec.key -> Cell
    n_done: int = 0
    n_failed: int = 0
    n_asked: int | None = None
    n_seeds_done: int = 0  # distinct seeds among the completed runs (a run without a seed counts once)
    seeds: list[int] = field(default_factory=list)
    duplicate_seeds: list[int] = field(default_factory=list)
    failed: list[tuple[int | None, str, str]] = field(default_factory=list)  # (seed, error, run_dir)
    runs: pd.DataFrame | None = None  # the completed runs of this row
    per_seed: dict[str, dict[int, float]] = field(default_factory=dict)  # metric -> {seed: value (shown units)}

    @property
    def name(self) -> str:
        return self.spec.name + (f" [{self.variant}]" if self.variant else "")


@dataclass
class Table:
    layout: Layout
    rows: list[Row]
    mean_row: Row | None = None
    reference: Row | None = None  # the default row that the other rows are compared with
    context: dict = field(default_factory=dict)  # datasets, profiles, seeds, n_asked
    notes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.layout.key


def _value_text(value) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(_value_text(v) for v in value) + "]"
    if is_missing(value):
        return "<absent>"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# Keys named first in a variant's label (the rest only when needed to tell the variants apart).
LABEL_PRIORITY = (
    "config.profile_name",
    "config.data.name",
    "config.model.name",
    "config.backbone.name",
    "config.loss.name",
    "config.task",
    "config.trainer.epochs",
)


def _split_variants(
    runs: pd.DataFrame, columns: list[str]
) -> tuple[list[tuple[str, pd.DataFrame]], list[str]]:
    """Runs of one row whose configs differ (beyond the ignored keys) are split into variants.

    Returns ``[(label, runs), …]`` (label "" when all agree) and the differing columns. A label names the
    fewest differing keys (priority keys first) that tell the variants apart, and how many more differ.
    """
    if runs.empty:
        return [("", runs)], []
    texts = runs[columns].map(_value_text) if columns else pd.DataFrame(index=runs.index)
    differing = [c for c in columns if texts[c].nunique() > 1]
    if not differing:
        return [("", runs)], []
    ordered = [c for c in LABEL_PRIORITY if c in differing] + [
        c for c in differing if c not in LABEL_PRIORITY
    ]
    n_groups = texts[differing].apply(tuple, axis=1).nunique()
    k = next(
        k for k in range(1, len(ordered) + 1) if texts[ordered[:k]].apply(tuple, axis=1).nunique() == n_groups
    )
    shown, hidden = ordered[:k], len(ordered) - k

    def label(r) -> str:
        text = ", ".join(f"{c[len('config.') :]}={r[c]}" for c in shown)
        return text + (f" (+{hidden} more key{'s' if hidden > 1 else ''})" if hidden else "")

    labels = texts.apply(label, axis=1)
    return [(text, runs[labels == text]) for text in sorted(set(labels))], ordered


def _key_list(columns: list[str], limit: int = 8) -> str:
    names = [c[len("config.") :] if c.startswith("config.") else c for c in columns]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _row(layout: Layout, spec: RowSpec, runs: pd.DataFrame, paper: dict, variant: str = "") -> Row:
    row = Row(spec=spec, variant=variant)
    done = runs[runs["status"] == "completed"] if not runs.empty else runs
    bad = runs[runs["status"] != "completed"] if not runs.empty else runs
    row.n_done, row.n_failed = len(done), len(bad)
    row.runs = done
    asked = [int(v) for v in runs.get("n_seeds", pd.Series(dtype=object)) if not is_missing(v)]
    row.n_asked = max(asked) if asked else None
    seeds = [int(s) for s in done["seed"] if not is_missing(s)] if not done.empty else []
    row.seeds = sorted(set(seeds))
    row.n_seeds_done = len(row.seeds) + (len(done) - len(seeds))
    row.duplicate_seeds = sorted({s for s in seeds if seeds.count(s) > 1})
    row.failed = [
        (None if is_missing(r["seed"]) else int(r["seed"]), r["error"] or "", r["run_dir"])
        for _, r in bad.iterrows()
    ]
    for metric in layout.metrics:
        values = done[metric.column] if (not done.empty and metric.column in done.columns) else []
        cell = aggregate(values, metric.scale)
        row.per_seed[metric.key] = _per_seed(done, metric)
        if layout.has_paper:  # every variant of a row is compared with the paper's number for that row
            cell.paper, _ = paper_value(paper, layout.key, spec.paper_row or spec.id, metric.key)
            cell.paper_text = paper_text(paper, layout.key, spec.paper_row or spec.id, metric.key)
        row.cells[metric.key] = cell
    return row


def _per_seed(done: pd.DataFrame, metric: MetricSpec) -> dict[int, float]:
    """``{seed: value}`` of one metric (in shown units); a seed with several completed runs: their mean."""
    if done.empty or metric.column not in done.columns:
        return {}
    values: dict[int, list[float]] = {}
    for seed, value in zip(done["seed"], done[metric.column], strict=True):
        if not is_missing(seed) and not is_missing(value):
            values.setdefault(int(seed), []).append(float(value) * metric.scale)
    return {s: math.fsum(v) / len(v) for s, v in values.items()}


def _compare_with_default(table: Table) -> None:
    """Paired t-test of every row against the table's default row, per metric with a seed spread."""
    layout = table.layout
    if not layout.default_row:
        return
    found = [r for r in table.rows if r.spec.id == layout.default_row and r.n_done]
    if len(found) > 1:
        table.notes.append(
            f"The default row ({found[0].spec.name}) is split into variants: no row is compared with it."
        )
        return
    if not found:
        return
    table.reference = reference = found[0]
    for row in table.rows:
        if row is reference or row.spec.paper_only or not row.n_done:
            continue
        for metric in layout.metrics:
            if metric.with_std:
                row.cells[metric.key].test = paired_t_test(row.per_seed[metric.key], reference.per_seed[metric.key])


def _generated_roots(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs whose data the generator makes (``data.generator`` set) are the same data wherever they were
    written: their ``data.root`` is replaced by "(generated)" so that it does not split their rows."""
    generator = [c for c in runs.columns if c.startswith("config.data.generator.")]
    if "config.data.root" not in runs.columns or not generator:
        return runs
    made = runs[generator].map(lambda v: not is_missing(v)).any(axis=1)
    if not made.any():
        return runs
    runs = runs.copy()
    runs.loc[made, "config.data.root"] = "(generated)"
    return runs


def _sources(paper: dict, layout: Layout, rows: list[Row]) -> list[str]:
    out = set()
    for row in rows:
        for metric in layout.metrics:
            _, source = paper_value(paper, layout.key, row.spec.paper_row or row.spec.id, metric.key)
            if source:
                out.add(source)
    if layout.mean_row:
        for metric in layout.metrics:
            _, source = paper_value(paper, layout.key, "mean", metric.key)
            if source:
                out.add(source)
    return sorted(out)


def _context(runs: pd.DataFrame) -> dict:
    done = runs[runs["status"] == "completed"] if not runs.empty else runs

    def values(column: str) -> list[str]:
        if done.empty or column not in done.columns:
            return []
        return sorted({_value_text(v) for v in done[column] if not is_missing(v)})

    def precisions() -> list[str]:
        """``trainer.precision`` of the runs; bf16 with ``arch.fp32_scores`` reads "bf16 (fp32 scores)"."""
        if done.empty or "config.trainer.precision" not in done.columns:
            return []
        scores = done.get("config.arch.fp32_scores", pd.Series([None] * len(done), index=done.index))
        pairs = zip(done["config.trainer.precision"], scores, strict=True)
        return sorted({f"{p} (fp32 scores)" if p == "bf16" and not is_missing(s) and bool(s) else _value_text(p)
                       for p, s in pairs if not is_missing(p)})

    asked = [int(v) for v in runs.get("n_seeds", pd.Series(dtype=object)) if not is_missing(v)]
    seeds = sorted({int(s) for s in done["seed"] if not is_missing(s)}) if not done.empty else []
    return {
        "datasets": values("config.data.name"),
        "profiles": values("config.profile_name"),
        "backbones": values("config.backbone.name"),
        "image_sizes": values("config.data.image_size"),
        "precisions": precisions(),
        "seeds": seeds,
        "n_asked": max(asked) if asked else None,
        "n_runs": len(runs),
        "n_done": len(done),
    }


def build_table(runs: pd.DataFrame, layout: Layout, paper: pd.DataFrame | dict) -> Table:
    """The table of one experiment: the paper's rows (missing ones included), then any other rows found."""
    paper = paper_lookup(paper) if isinstance(paper, pd.DataFrame) else paper
    runs = _generated_roots(runs.reset_index(drop=True))
    keys = [layout.key_of(r) for _, r in runs.iterrows()] if not runs.empty else []
    by_key: dict = {}
    for index, key in enumerate(keys):
        by_key.setdefault(key, []).append(index)
    columns = comparable_columns(runs)
    ordered = [spec.key for spec in layout.rows]
    extra = sorted((k for k in by_key if k is not None and k not in ordered), key=_value_text)
    table = Table(layout=layout, rows=[], context=_context(runs))
    split_notes = []
    for key in [*ordered, *extra]:
        spec = layout.spec_for(key)
        group = runs.iloc[by_key.get(key, [])]
        variants, differing = _split_variants(group, columns) if not spec.paper_only else ([("", group)], [])
        if len(variants) > 1:
            note = (
                f"{spec.name}: runs differ in {_key_list(differing)} — not averaged together, shown as "
                "separate rows."
            )
            split_notes.append((note, differing))
        for variant, part in variants:
            row = _row(layout, spec, part, paper, variant)
            if row.n_asked is None and not spec.paper_only:
                row.n_asked = table.context["n_asked"]
            table.rows.append(row)
    if None in by_key:
        orphans = runs.iloc[by_key[None]]
        cols = ", ".join(c[len("config.") :] if c.startswith("config.") else c for c in layout.key_columns)
        for _, r in orphans.iterrows():
            table.notes.append(
                f"Run `{r['run_dir']}` ({r['status']}) lacks {cols} in its config: not placed in a "
                f"row{': ' + r['error'] if r['error'] else ''}."
            )
    if layout.mean_row:
        table.mean_row = _mean_row(layout, table.rows, paper)
    _annotate(table, runs, columns, split_notes)
    _compare_with_default(table)
    table.sources = _sources(paper, layout, table.rows)
    return table


def _mean_row(layout: Layout, rows: list[Row], paper: dict) -> Row:
    """The mean over the paper's rows (e.g. the four CIFAR-10 splits) of our per-row means."""
    spec = RowSpec("mean", ("mean",), ("mean",), f"mean of the {len(layout.rows)} rows", short="mean")
    row = Row(spec=spec)
    for metric in layout.metrics:
        means = []
        for canonical in layout.rows:  # one value per paper row; a row split into variants has none
            found = [r.cells[metric.key].mean for r in rows if r.spec == canonical]
            if len(found) == 1 and found[0] is not None:
                means.append(found[0])
        cell = Cell()
        if means and len(means) == len(layout.rows):
            cell = Cell(mean=math.fsum(means) / len(means), std=None, n=len(means))
        cell.paper, _ = paper_value(paper, layout.key, "mean", metric.key)
        cell.paper_text = paper_text(paper, layout.key, "mean", metric.key)
        row.cells[metric.key] = cell
    return row


def _annotate(
    table: Table, runs: pd.DataFrame, columns: list[str], split_notes: list[tuple[str, list[str]]]
) -> None:
    layout = table.layout
    for row in table.rows:
        if row.spec.paper_only:
            continue
        if row.n_done == 0:
            why = f"{row.n_failed} failed" if row.n_failed else "no run"
            table.missing.append(f"{row.name}: no completed run ({why})")
        elif row.n_asked and row.n_seeds_done < row.n_asked:
            table.partial.append(f"{row.name}: {row.n_seeds_done} of {row.n_asked} seeds completed")
        for seed, error, run_dir in row.failed:
            table.failed.append(
                f"{row.name}, seed {seed if seed is not None else '?'}: {error} (`{run_dir}`)"
            )
        runs_done = row.runs if row.runs is not None else pd.DataFrame()
        if "git_sha" in runs_done.columns:
            shas = sorted({str(v)[:10] for v in runs_done["git_sha"] if not is_missing(v)})
            if len(shas) > 1:
                table.notes.append(
                    f"{row.name}: averaged runs come from different code versions (git {', '.join(shas)})."
                )
        if row.duplicate_seeds:
            table.notes.append(
                f"{row.name}: seed(s) {', '.join(map(str, row.duplicate_seeds))} have more than one "
                "completed run; all are averaged."
            )
    table.notes.extend(note for note, _ in split_notes)
    split_columns = {c for _, cols in split_notes for c in cols}
    if layout.row_prefixes and not runs.empty:
        done = runs[runs["status"] == "completed"]
        across = []
        for column in columns:
            if column in split_columns or any(
                column == p or column.startswith(p + ".") for p in layout.row_prefixes
            ):
                continue
            texts = sorted({_value_text(v) for v in done[column]}) if not done.empty else []
            if len(texts) > 1:
                across.append(f"{column[len('config.') :]} ({', '.join(texts)})")
        if across:
            table.notes.append(
                "Rows were run with different settings besides the table's own keys: "
                + "; ".join(across)
                + ". Compare rows with care."
            )
    ctx = table.context
    if layout.paper_dataset and ctx["n_done"]:
        datasets, profiles = ctx["datasets"], ctx["profiles"]
        if datasets != [layout.paper_dataset] or profiles != ["paper"]:
            table.notes.append(
                f"These runs use data={'/'.join(datasets) or '?'}, profile={'/'.join(profiles) or '?'};"
                f" the paper's numbers are {layout.paper_dataset} at the paper's recipe: compare trends, "
                "not values."
            )
    if GFLOPS in layout.metrics:
        counted = sorted({str(v) for v in runs.get("complexity.flops_counted", []) if not is_missing(v)})
        if counted:
            table.notes.append("What our GFLOPs count: " + "; ".join(counted) + ".")
    table.notes.extend(layout.notes)


def _generic_metrics(runs: pd.DataFrame) -> tuple[MetricSpec, ...]:
    done = runs[runs["status"] == "completed"] if not runs.empty else runs
    specs = [metric_spec(name) for name in metric_names(done) if done[f"metric.{name}"].notna().any()]
    for spec in (GFLOPS, LEARNABLE):
        if spec.column in done.columns and done[spec.column].notna().any():
            specs.append(spec)
    return tuple(specs)


def tabulated(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs that belong in tables: tasks fit, eval, complexity (or a record without a task)."""
    if frame.empty:
        return frame
    keep = frame["task"].map(lambda t: is_missing(t) or t in TABULATED_TASKS)
    return frame[keep]


def build_tables(frame: pd.DataFrame, paper: pd.DataFrame) -> list[Table]:
    """One table per experiment present: the paper's layout for known experiments, a generic one otherwise."""
    runs = tabulated(frame)
    if runs.empty:
        return []
    lookup = paper_lookup(paper)
    declared = layouts()
    experiments = {e for e in runs["experiment"] if not is_missing(e)}
    order = [e for e in declared if e in experiments] + sorted(experiments - set(declared))
    if runs["experiment"].map(is_missing).any():
        order.append(None)
    tables = []
    for experiment in order:
        mask = runs["experiment"].map(is_missing) if experiment is None else runs["experiment"] == experiment
        sub = runs[mask]
        layout = declared.get(experiment) if experiment else None
        if layout is None:
            layout = generic_layout(experiment, _generic_metrics(sub))
        tables.append(build_table(sub, layout, lookup))
    return tables


# --- display --------------------------------------------------------------------------------------------
@dataclass
class Grid:
    """A table ready to render: header, string cells, and the (row, column) cells to set in bold."""

    key: str
    title: str
    columns: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)
    caption: str = ""
    notes: list[str] = field(default_factory=list)  # Markdown bullet text under the table
    n_label_columns: int = 1


def fmt_number(value: float | None, decimals: int) -> str:
    return MISSING if value is None else f"{value:.{decimals}f}"


def fmt_ours(cell: Cell, metric: MetricSpec) -> str:
    """``mean ± std [95% interval] (n=k)`` and the mark of the comparison with the default row;
    one seed: ``mean (n=1)`` (no spread to show)."""
    if cell.mean is None:
        return MISSING
    d = metric.decimals
    if metric.with_std:
        text = f"{cell.mean:.{d}f}"
        if cell.n > 1 and cell.std is not None:
            text += f" ± {cell.std:.{d}f}"
        if cell.ci is not None:
            text += f" [{cell.ci[0]:.{d}f}, {cell.ci[1]:.{d}f}]"
        return text + f" (n={cell.n})" + mark(cell)
    if cell.std:
        return f"{cell.mean:.{d}f} ± {cell.std:.{d}f}"
    return f"{cell.mean:.{d}f}"


def mark(cell: Cell) -> str:
    """† the difference from the default row is within seed noise; ‡ not testable; "" otherwise."""
    if cell.test is None:
        return ""
    return {NOT_SIGNIFICANT: NOT_SIGNIFICANT_MARK, NOT_TESTABLE: NOT_TESTABLE_MARK}.get(cell.test.verdict, "")


def significance_legend(table: Table) -> str:
    """The sentence under a table that says what its intervals and marks mean."""
    if not any(m.with_std for m in table.layout.metrics):
        return ""
    text = "[a, b] = 95% t-interval of the mean over seeds."
    default = table.layout.default_row
    if table.reference is not None:
        text += (
            f" Each row is compared with the default row ({table.reference.name}) by a paired t-test over the "
            "seeds both completed (a seed fixes the data order and the initialisation of both rows, so "
            f"pairing cancels that shared noise): {NOT_SIGNIFICANT_MARK} = the difference is not significant "
            f"at {ALPHA:.0%} (within seed noise), {NOT_TESTABLE_MARK} = not testable (fewer than 2 shared "
            "seeds); no mark = significant."
        )
    elif default:
        text += f" The default row ({default}) has no completed run: no row is compared with it."
    return text


def delta(cell: Cell, metric: MetricSpec) -> float | None:
    """Ours − paper, from our value rounded as shown (so the columns add up as read)."""
    if cell.mean is None or cell.paper is None:
        return None
    return round(round(cell.mean, metric.decimals) - cell.paper, metric.decimals)


def fmt_delta(value: float | None, decimals: int) -> str:
    if value is None:
        return MISSING
    text = f"{value:+.{decimals}f}"
    return "+" + text[1:] if text.startswith("-") and float(text) == 0 else text


def _seeds_text(row: Row) -> str:
    if row.spec.paper_only:
        return "paper only"
    text = f"{row.n_seeds_done}/{row.n_asked}" if row.n_asked else str(row.n_seeds_done)
    return text + (f", {row.n_failed} failed" if row.n_failed else "")


def _best(values: list[float | None], higher: bool) -> set[int]:
    present = [v for v in values if v is not None]
    if not present:
        return set()
    target = max(present) if higher else min(present)
    return {i for i, v in enumerate(values) if v is not None and v == target}


def _caption(table: Table) -> str:
    layout, ctx = table.layout, table.context
    seeds = ", ".join(map(str, ctx["seeds"])) or "none"
    asked = f" ({ctx['n_asked']} asked)" if ctx["n_asked"] else ""
    head = (
        f"Table {layout.key} reproduced: {layout.title.rstrip('.')}."
        if layout.has_paper
        else f"{layout.title}."
    )
    precision = ", ".join(ctx.get("precisions") or []) or "not recorded"
    parts = [
        head,
        f"Dataset: {', '.join(ctx['datasets']) or '—'}; profile: {', '.join(ctx['profiles']) or '—'};",
        f"precision: {precision};",
        f"seeds: {seeds}{asked}.",
        layout.definitions,
    ]
    legend = significance_legend(table)
    if legend:
        parts.append(legend)
    if layout.has_paper:
        parts.append("Paper: " + ("; ".join(source_summary(table.sources)) or "no number in the paper") + ".")
    return " ".join(parts)


def source_summary(sources: list[str]) -> list[str]:
    """``seed 000, Table S2 row 1 (…)`` … → ``seed 000, Table S2`` (per-row detail stays in the CSV)."""
    out = []
    for source in sources:
        match = re.match(r"^(.*?Table [A-Z]*\d+(?:\.\d+)?)\b", source)
        short = match.group(1) if match else source
        if short not in out:
            out.append(short)
    return out


def main_grid(table: Table) -> Grid:
    layout = table.layout
    variants = any(r.variant for r in table.rows)
    columns = [*layout.label_columns, *(["runs differ in"] if variants else [])]
    value_columns: list[tuple[MetricSpec, str]] = []
    for metric in layout.metrics:
        if layout.has_paper:
            value_columns += [(metric, "ours"), (metric, "paper"), (metric, "delta")]
        else:
            value_columns.append((metric, "ours"))
    for metric, kind in value_columns:
        if not layout.has_paper:
            columns.append(metric.label)
        else:
            columns.append(f"{metric.label} {'Δ' if kind == 'delta' else kind}")
    columns.append("seeds")
    rows_all = [*table.rows, *([table.mean_row] if table.mean_row else [])]
    cells: list[list[str]] = []
    numbers: list[list[float | None]] = []
    for row in rows_all:
        line = [*row.spec.labels, *([row.variant or ""] if variants else [])]
        nums: list[float | None] = []
        for metric, kind in value_columns:
            cell = row.cells[metric.key]
            if kind == "ours":
                text = fmt_ours(cell, metric)
                if row is table.mean_row and cell.mean is not None:
                    text = f"{cell.mean:.{metric.decimals}f} (mean of {cell.n})"
                line.append(text)
                nums.append(
                    None if cell.mean is None or row is table.mean_row else round(cell.mean, metric.decimals)
                )
            elif kind == "paper":
                line.append(cell.paper_text or fmt_number(cell.paper, metric.decimals))
                nums.append(None if row is table.mean_row else cell.paper)
            else:
                line.append(fmt_delta(delta(cell, metric), metric.decimals))
                nums.append(None)
        if row is table.mean_row:
            done = sum(1 for r in table.rows if r.n_done and r.spec in layout.rows and not r.variant)
            line.append(f"{done}/{len(layout.rows)} rows")
        else:
            line.append(_seeds_text(row))
        cells.append(line)
        numbers.append(nums)
    bold = set()
    offset = len(layout.label_columns) + (1 if variants else 0)
    for j, (metric, kind) in enumerate(value_columns):
        if kind == "delta" or not metric.bold:
            continue
        for i in _best([n[j] for n in numbers], metric.higher_is_better):
            bold.add((i, offset + j))
    notes = _notes(table)
    heading = (
        f"Table {layout.key} — {layout.title} (experiment={layout.experiment})"
        if layout.has_paper
        else layout.title
    )
    return Grid(
        key=layout.key,
        title=heading,
        columns=columns,
        rows=cells,
        bold=bold,
        caption=_caption(table),
        notes=notes,
        n_label_columns=offset,
    )


def _notes(table: Table) -> list[str]:
    notes = []
    if table.missing:
        notes.append(f"Missing cells ({len(table.missing)}), shown as {MISSING}:")
        notes += [f"  - {m}" for m in table.missing]
    if table.failed:
        notes.append(f"Failed runs ({len(table.failed)}):")
        notes += [f"  - {f}" for f in table.failed]
    if table.partial:
        notes.append("Fewer seeds than the experiment asked for:")
        notes += [f"  - {p}" for p in table.partial]
    notes += table.notes
    return notes


def per_class_grids(table: Table) -> list[Grid]:
    """Category × metric for every row of ``table`` whose runs recorded per-class metrics, with a mean row."""
    grids = []
    for row in table.rows:
        runs = row.runs
        if runs is None or runs.empty:
            continue
        classes = per_class_columns(runs)
        if not classes:
            continue
        names = sorted({m for pairs in classes.values() for m, _ in pairs}, key=metric_sort_key)
        columns = ["category", *(METRIC_LABELS.get(m, m) for m in names)]
        lines, numbers = [], []
        for category, pairs in classes.items():
            lookup = dict(pairs)
            line, nums = [category], []
            for name in names:
                cell = aggregate(runs[lookup[name]], 100.0) if name in lookup else Cell()
                line.append(fmt_ours(cell, metric_spec(name)))
                nums.append(None if cell.mean is None else round(cell.mean, 1))
            lines.append(line)
            numbers.append(nums)
        mean_line = ["mean"]
        for name in names:
            cols = [dict(pairs)[name] for pairs in classes.values() if name in dict(pairs)]
            per_run = runs[cols].mean(axis=1, skipna=True)
            mean_line.append(fmt_ours(aggregate(per_run, 100.0), metric_spec(name)))
        lines.append(mean_line)
        bold = {(i, j + 1) for j in range(len(names)) for i in _best([n[j] for n in numbers], True)}
        ctx = {
            "seeds": ", ".join(map(str, row.seeds)),
            "data": ", ".join(sorted({_value_text(v) for v in runs.get("config.data.name", [])})) or "—",
            "profile": ", ".join(sorted({_value_text(v) for v in runs.get("config.profile_name", [])}))
            or "—",
        }
        where = f"Table {table.key}" if table.layout.has_paper else table.layout.title
        caption = (
            f"Per-class results, {where}, {row.name}. Dataset: {ctx['data']}; profile: {ctx['profile']}; "
            f"seeds: {ctx['seeds']}. Values in %, mean ± sample std (ddof=1) over seeds (n); AUROC/AP/F1-max "
            "per category; mean row: the mean over categories of each run, then over seeds."
        )
        grids.append(
            Grid(
                key=f"{table.key}-{row.spec.id}{'-' + row.variant if row.variant else ''}",
                title=f"Per-class: {where}, {row.name}",
                columns=columns,
                rows=lines,
                bold=bold,
                caption=caption,
                n_label_columns=1,
            )
        )
    return grids


def table_grids(table: Table) -> list[Grid]:
    return [main_grid(table), *per_class_grids(table)]


def summary_frame(tables: list[Table]) -> pd.DataFrame:
    """One line per (table, row, metric): ours mean/std/n, the paper, Δ — the tables in long form."""
    lines = []
    for table in tables:
        for row in [*table.rows, *([table.mean_row] if table.mean_row else [])]:
            for metric in table.layout.metrics:
                cell = row.cells[metric.key]
                lines.append(
                    {
                        "table": table.key,
                        "experiment": table.layout.experiment,
                        "row": row.spec.id,
                        "variant": row.variant,
                        "metric": metric.key,
                        "unit": metric.unit,
                        "mean": cell.mean,
                        "std": cell.std,
                        "n": cell.n,
                        "n_asked": row.n_asked,
                        "n_failed": row.n_failed,
                        "paper": cell.paper,
                        "delta": delta(cell, metric),
                        "paper_only": row.spec.paper_only,
                        "ci_low": cell.ci[0] if cell.ci else None,
                        "ci_high": cell.ci[1] if cell.ci else None,
                        "vs_default": cell.test.verdict if cell.test else None,
                        "n_paired": cell.test.n if cell.test else None,
                        "p_vs_default": cell.test.p if cell.test else None,
                    }
                )
    return pd.DataFrame(lines)


# --- Markdown -------------------------------------------------------------------------------------------
def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def grid_markdown(grid: Grid) -> str:
    """A GitHub-flavoured Markdown table (padded columns, labels left, values right)."""
    header = [_md_cell(c) for c in grid.columns]
    body = [[_md_cell(c) for c in row] for row in grid.rows]
    widths = [max([len(header[j]), 3, *(len(r[j]) for r in body)]) for j in range(len(header))]
    left = [j < grid.n_label_columns for j in range(len(header))]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if lf else c.rjust(w) for c, w, lf in zip(cells, widths, left, strict=True)
            )
            + " |"
        )

    rule = (
        "| "
        + " | ".join("-" * w if lf else "-" * (w - 1) + ":" for w, lf in zip(widths, left, strict=True))
        + " |"
    )
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def grid_section(grid: Grid, level: int = 2) -> str:
    parts = [f"{'#' * level} {grid.title}", "", grid_markdown(grid), "", grid.caption]
    if grid.notes:
        parts += ["", *(n if n.startswith("  - ") else f"- {n}" for n in grid.notes)]
    return "\n".join(parts)
