"""Stage 3 of the report, the grid: a :class:`reports.aggregate.Table` becomes :class:`Grid` objects,
display strings (``mean ± std [95% interval] (n=k)``, the paper's number, Δ, the marks of the comparison
with the default row), the best cells to set in bold, the caption (provenance and legend) and the notes.
Markdown (:mod:`reports.markdown`) and LaTeX (:mod:`reports.latex`) render a grid as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from metrics.registry import label
from reports.aggregate import Cell, Row, Table, aggregate, delta, per_seed_values
from reports.collect import is_missing, metric_sort_key, per_class_columns, undefined_of
from reports.declaration import MetricSpec, metric_spec
from reports.stats import ALPHA, NOT_SIGNIFICANT, NOT_TESTABLE, beats
from reports.variants import value_text

MISSING = "—"
# Marks after a cell compared with its table's default row; the legend says what they mean.
NOT_SIGNIFICANT_MARK, NOT_TESTABLE_MARK = "†", "‡"
# After a mean that leaves out categories where the metric is not defined (e.g. pixel AUROC of a class whose
# test masks are all empty); the notes under the table name them and why.
UNDEFINED_MARK = "§"


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
    """``mean ± std [95% interval] (n=k)``, § when categories where the metric is undefined are left out,
    and the mark of the comparison with the default row; one seed: ``mean (n=1)`` (no spread to show)."""
    undefined = UNDEFINED_MARK if cell.undefined else ""
    if cell.mean is None:
        return MISSING + undefined
    d = metric.decimals
    if metric.with_std:
        text = f"{cell.mean:.{d}f}"
        if cell.n > 1 and cell.std is not None:
            text += f" ± {cell.std:.{d}f}"
        if cell.ci is not None:
            text += f" [{cell.ci[0]:.{d}f}, {cell.ci[1]:.{d}f}]"
        return text + f" (n={cell.n})" + undefined + mark(cell)
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
    if not any(m.with_std for m in table.spec.metrics):
        return ""
    text = "[a, b] = 95% t-interval of the mean over seeds."
    default = table.spec.default_row
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
    """Every index holding the column's best value (published numbers, deterministic counts)."""
    present = [v for v in values if v is not None]
    if not present:
        return set()
    target = max(present) if higher else min(present)
    return {i for i, v in enumerate(values) if v is not None and v == target}


def _best_beyond_noise(values: list[float | None], per_seed: list[dict[int, float]], higher: bool) -> set[int]:
    """The index of the column's best value (as shown) when it beats the runner-up, the next best value,
    beyond seed noise (:func:`reports.stats.beats` on their per-seed values); nothing on a tie, with a
    single value, or when either of the two has fewer than two seeds."""
    present = sorted((i for i, v in enumerate(values) if v is not None), key=lambda i: values[i],
                     reverse=higher)
    if len(present) < 2:
        return set()
    best, runner_up = present[0], present[1]
    if values[best] == values[runner_up]:
        return set()
    return {best} if beats(per_seed[best], per_seed[runner_up], higher) else set()


def bold_legend(table: Table) -> str:
    """The sentence under a table that says how its bold cells are chosen."""
    metrics = [m for m in table.spec.metrics if m.bold]
    if not metrics:
        return ""
    parts = []
    if any(m.with_std for m in metrics):
        parts.append(
            "Bold (ours): the best mean of its column, only when it beats the runner-up (the next best mean) "
            "beyond seed noise: a paired t-test over the seeds both completed, Welch's t-test when they share "
            f"fewer than 2, significant at {ALPHA:.0%}; no bold on a tie or when either has fewer than 2 seeds"
        )
    if any(not m.with_std for m in metrics):
        parts.append("bold (measured counts, no seed noise): the best value")
    if table.spec.has_paper:
        parts.append("bold (paper): the paper's best published number (no seed spread is published)")
    text = "; ".join(parts)
    return text[0].upper() + text[1:] + "."


# A table's runs are a pipeline check or a demo when their profile is one of these: their caption says so,
# and never "reproduced" (only profile=paper on the paper's dataset may say that).
PIPELINE_CHECK = {"smoke": "tiny model, seconds of training"}
DEMO = {"demo": "a CPU demo: compact model, minutes of training on the synthetic data"}
REPRODUCTION = "paper"


def standing(profiles: list[str], has_paper: bool) -> str:
    """What a table's runs are when their profile makes them no result ("" otherwise)."""
    check = [p for p in profiles if p in PIPELINE_CHECK]
    if check:
        return (
            f"Pipeline check at profile={check[0]} ({PIPELINE_CHECK[check[0]]}): not a result"
            + ("; the paper's numbers are shown for layout only." if has_paper else ".")
        )
    demo = [p for p in profiles if p in DEMO]
    if demo:
        return (
            f"Profile={demo[0]} ({DEMO[demo[0]]}), not the paper's recipe"
            + ("; compare trends with the paper's numbers, not values." if has_paper else ".")
        )
    return ""


def _head(table: Table) -> str:
    """The caption's first sentences: what the runs are, then the table's title; "reproduced" only for
    runs of profile=paper (all of them) on the paper's dataset."""
    spec, ctx = table.spec, table.context
    title = spec.title.rstrip(".")
    profiles, datasets = ctx.get("profiles") or [], ctx.get("datasets") or []
    warning = standing(profiles, spec.has_paper)
    if not spec.has_paper:
        return f"{warning} {title}." if warning else f"{title}."
    if warning:
        return f"{warning} Table {spec.key}: {title}."
    if not ctx.get("n_done"):
        return f"Table {spec.key} (no completed run): {title}."
    paper_data = not spec.paper_dataset or datasets == [spec.paper_dataset]
    if profiles == [REPRODUCTION] and paper_data:
        return f"Table {spec.key} reproduced: {title}."
    ran = f"profile={'/'.join(profiles) or '(not recorded)'}, data={'/'.join(datasets) or '(not recorded)'}"
    paper = f"profile={REPRODUCTION}" + (f", data={spec.paper_dataset}" if spec.paper_dataset else "")
    return f"Table {spec.key} rerun at {ran}, not the paper's {paper}: {title}."


def _caption(table: Table) -> str:
    spec, ctx = table.spec, table.context
    seeds = ", ".join(map(str, ctx["seeds"])) or "none"
    asked = f" ({ctx['n_asked']} asked)" if ctx["n_asked"] else ""
    head = _head(table)
    precision = ", ".join(ctx.get("precisions") or []) or "not recorded"
    parts = [
        head,
        f"Dataset: {', '.join(ctx['datasets']) or '—'}; profile: {', '.join(ctx['profiles']) or '—'};",
        f"precision: {precision};",
        *([_code(ctx)] if ctx.get("git") or ctx.get("git_dirty") else []),
        f"seeds: {seeds}{asked}.",
        spec.definitions,
    ]
    parts += [text for text in (significance_legend(table), bold_legend(table)) if text]
    if spec.has_paper:
        parts.append("Paper: " + ("; ".join(source_summary(table.sources)) or "no number in the paper") + ".")
    return " ".join(parts)


def _code(ctx: dict) -> str:
    """``code: git <sha>[, <sha>][ with uncommitted changes (k of n runs)];`` from the records' env."""
    dirty = f" with uncommitted changes ({ctx['git_dirty']} of {ctx['n_done']} runs)" if ctx["git_dirty"] else ""
    return f"code: git {', '.join(ctx['git']) or '(not recorded)'}{dirty};"


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
    spec = table.spec
    variants = any(r.variant for r in table.rows)
    by_dataset = len(table.context.get("datasets") or []) > 1  # each row names its dataset(s)
    columns = [*spec.label_columns, *(["dataset"] if by_dataset else []), *(["runs differ in"] if variants else [])]
    value_columns: list[tuple[MetricSpec, str]] = []
    for metric in spec.metrics:
        if spec.has_paper:
            value_columns += [(metric, "ours"), (metric, "paper"), (metric, "delta")]
        else:
            value_columns.append((metric, "ours"))
    for metric, kind in value_columns:
        if not spec.has_paper:
            columns.append(metric.label)
        else:
            columns.append(f"{metric.label} {'Δ' if kind == 'delta' else kind}")
    columns.append("seeds")
    rows_all = [*table.rows, *([table.mean_row] if table.mean_row else [])]
    cells: list[list[str]] = []
    numbers: list[list[float | None]] = []
    for row in rows_all:
        line = [
            *row.spec.labels,
            *([_datasets(row)] if by_dataset else []),
            *([row.variant or ""] if variants else []),
        ]
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
            done = sum(1 for r in table.rows if r.n_done and r.spec in spec.rows and not r.variant)
            line.append(f"{done}/{len(spec.rows)} rows")
        else:
            line.append(_seeds_text(row))
        cells.append(line)
        numbers.append(nums)
    bold = set()
    offset = len(spec.label_columns) + (1 if by_dataset else 0) + (1 if variants else 0)
    for j, (metric, kind) in enumerate(value_columns):
        if kind == "delta" or not metric.bold:
            continue
        column = [n[j] for n in numbers]
        if kind == "ours" and metric.with_std:  # seeds: the best only when it beats the runner-up
            seeds = [row.per_seed.get(metric.key, {}) for row in rows_all]
            best = _best_beyond_noise(column, seeds, metric.higher_is_better)
        else:  # the paper's published numbers, deterministic counts
            best = _best(column, metric.higher_is_better)
        bold |= {(i, offset + j) for i in best}
    notes = _notes(table)
    heading = (
        f"Table {spec.key} — {spec.title} (experiment={spec.experiment})"
        if spec.has_paper
        else spec.title
    )
    return Grid(
        key=spec.key,
        title=heading,
        columns=columns,
        rows=cells,
        bold=bold,
        caption=_caption(table),
        notes=notes,
        n_label_columns=offset,
    )


def _datasets(row: Row) -> str:
    """The ``data.name`` of a row's completed runs ("" for a row without one)."""
    runs = row.runs
    if runs is None or runs.empty or "config.data.name" not in runs.columns:
        return ""
    return ", ".join(sorted({value_text(v) for v in runs["config.data.name"] if not is_missing(v)}))


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
    notes += _undefined_notes(table)
    return notes


def _undefined_notes(table: Table) -> list[str]:
    """The legend of § and, per row and metric, the categories its mean leaves out and why."""
    lines = []
    for row in table.rows:
        for metric in table.spec.metrics:
            undefined = row.cells[metric.key].undefined if metric.key in row.cells else {}
            if undefined:
                where = "; ".join(f"{category} ({why})" for category, why in sorted(undefined.items()))
                lines.append(f"  - {row.name}, {metric.label}: {where}")
    if not lines:
        return []
    return [f"{UNDEFINED_MARK} = the mean over the categories where the metric is defined; not defined for:", *lines]


def per_class_grids(table: Table) -> list[Grid]:
    """Category × metric for every row of ``table`` whose runs recorded per-class metrics, with a mean row."""
    grids = []
    for row in table.rows:
        runs = row.runs
        if runs is None or runs.empty:
            continue
        classes = per_class_columns(runs)
        undefined = undefined_of(runs)  # {category: {metric: why}}
        if not classes:
            continue
        for category in undefined.keys() - classes.keys():  # every metric of that class undefined
            classes[category] = []
        classes = dict(sorted(classes.items()))
        names = sorted(
            {m for pairs in classes.values() for m, _ in pairs} | {m for ms in undefined.values() for m in ms},
            key=metric_sort_key,
        )
        columns = ["category", *(label(m) for m in names)]
        lines, numbers, seeds = [], [], []
        for category, pairs in classes.items():
            lookup = dict(pairs)
            line, nums = [category], []
            seeds.append({name: per_seed_values(runs, lookup[name], 100.0) for name in lookup})
            for name in names:
                cell = aggregate(runs[lookup[name]], 100.0) if name in lookup else Cell()
                why = undefined.get(category, {}).get(name)
                if why is not None and cell.mean is None:
                    line.append(f"undefined{UNDEFINED_MARK}")
                else:
                    cell.undefined = {category: why} if why is not None else {}  # undefined in some runs
                    line.append(fmt_ours(cell, metric_spec(name)))
                nums.append(None if cell.mean is None else round(cell.mean, 1))
            lines.append(line)
            numbers.append(nums)
        mean_line = [_mean_label(classes)]
        for name in names:
            cols = [dict(pairs)[name] for pairs in classes.values() if name in dict(pairs)]
            per_run = runs[cols].mean(axis=1, skipna=True)
            cell = aggregate(per_run, 100.0)
            cell.undefined = {c: ms[name] for c, ms in undefined.items() if name in ms}
            mean_line.append(fmt_ours(cell, metric_spec(name)))
        lines.append(mean_line)
        bold = {
            (i, j + 1)
            for j, name in enumerate(names)
            for i in _best_beyond_noise([n[j] for n in numbers], [s.get(name, {}) for s in seeds], True)
        }
        profiles = sorted({value_text(v) for v in runs.get("config.profile_name", []) if not is_missing(v)})
        ctx = {
            "seeds": ", ".join(map(str, row.seeds)),
            "data": ", ".join(sorted({value_text(v) for v in runs.get("config.data.name", [])})) or "—",
            "profile": ", ".join(profiles) or "—",
        }
        where = f"Table {table.key}" if table.spec.has_paper else table.spec.title
        warning = standing(profiles, False)
        caption = (
            (f"{warning} " if warning else "")
            + f"Per-class results, {where}, {row.name}. Dataset: {ctx['data']}; profile: {ctx['profile']}; "
            f"seeds: {ctx['seeds']}. Values in %, mean ± sample std (ddof=1) over seeds (n); AUROC/AP/F1-max "
            f"per category; {mean_line[0]} row: the mean over categories of each run, then over seeds. Bold: the best "
            "category of a column, only when it beats the runner-up beyond seed noise (as in the main table)."
        )
        notes = [
            f"{UNDEFINED_MARK} {label(name)} is not defined for {category}: {why}; "
            "means leave it out."
            for category, metrics in sorted(undefined.items())
            for name, why in sorted(metrics.items())
        ]
        grids.append(
            Grid(
                key=f"{table.key}-{row.spec.id}{'-' + row.variant if row.variant else ''}",
                title=f"Per-class: {where}, {row.name}",
                columns=columns,
                rows=lines,
                bold=bold,
                caption=caption,
                notes=notes,
                n_label_columns=1,
            )
        )
    return grids


def _mean_label(categories) -> str:
    """The per-class mean row's label: "mean", unless a category has that name."""
    label = "mean"
    while label in categories:
        label = f"({label} of the categories)" if label == "mean" else f"({label})"
    return label


def table_grids(table: Table) -> list[Grid]:
    return [main_grid(table), *per_class_grids(table)]
