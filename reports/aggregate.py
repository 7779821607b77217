"""Stage 2 of the report, the aggregate: runs (the DataFrame of :mod:`reports.collect`) and a table's
declaration (:mod:`reports.declaration`) become a :class:`Table` of numbers: per row and metric the mean,
sample std, 95% t-interval and n over seeds, the paper's number, the paired test against the default row
(:mod:`reports.stats`), and the notes (missing, failed and partial cells, runs that differ).

Pure functions of the run frame and the paper's numbers (:mod:`reports.paper`); display strings are the
next stage's (:mod:`reports.grid`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reports.collect import comparable_columns, is_missing, key_name, metric_names, undefined_of
from reports.declaration import (
    GFLOPS,
    LEARNABLE,
    MetricSpec,
    RowSpec,
    TableSpec,
    generic_table,
    metric_spec,
    specs_by_experiment,
)
from reports.paper import paper_lookup, paper_text, paper_value
from reports.stats import PairedTest, paired_t_test, t_interval
from reports.variants import generated_roots, key_list, split_variants, value_text

TABULATED_TASKS = ("fit", "eval", "complexity")


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
    undefined: dict[str, str] = field(default_factory=dict)  # category -> why the metric is not defined there


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
    merged: list[tuple[str, int]] = field(default_factory=list)  # (checkpoint run, records counted once)

    @property
    def name(self) -> str:
        return self.spec.name + (f" [{self.variant}]" if self.variant else "")


@dataclass
class Table:
    spec: TableSpec
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
        return self.spec.key


def _row(spec: TableSpec, row_spec: RowSpec, runs: pd.DataFrame, paper: dict, variant: str = "") -> Row:
    row = Row(spec=row_spec, variant=variant)
    done = runs[runs["status"] == "completed"] if not runs.empty else runs
    bad = runs[runs["status"] != "completed"] if not runs.empty else runs
    done, row.merged = one_per_model(done)
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
    undefined = undefined_of(done)
    for metric in spec.metrics:
        values = done[metric.column] if (not done.empty and metric.column in done.columns) else []
        cell = aggregate(values, metric.scale)
        cell.undefined = {c: m[metric.key] for c, m in undefined.items() if metric.key in m}
        row.per_seed[metric.key] = _per_seed(done, metric)
        if spec.has_paper:  # every variant of a row is compared with the paper's number for that row
            cell.paper, _ = paper_value(paper, spec.key, row_spec.id, metric.key)
            cell.paper_text = paper_text(paper, spec.key, row_spec.id, metric.key)
        row.cells[metric.key] = cell
    return row


def one_per_model(done: pd.DataFrame) -> tuple[pd.DataFrame, list[tuple[str, int]]]:
    """The completed runs with one line per trained model: the eval records of one checkpoint (with the fit
    record that wrote it, when it is in the same row) are one replicate, not one per evaluation: their
    numbers are averaged into the first one's line. Returns that frame and ``(checkpoint run, records)``
    for each model that had several."""
    if done.empty or "checkpoint" not in done.columns:
        return done, []
    model = [
        ckpt if not is_missing(ckpt) else Path(os.path.normpath(run_dir)).as_posix()
        for ckpt, run_dir in zip(done["checkpoint"], done["run_dir"], strict=True)
    ]
    groups: dict[str, list[int]] = {}
    for position, key in enumerate(model):
        groups.setdefault(key, []).append(position)
    if all(len(g) == 1 for g in groups.values()):
        return done, []
    numeric = [c for c in done.columns if c.startswith(("metric.", "per_class.", "complexity."))
               and pd.api.types.is_float_dtype(done[c])]
    lines = []
    for positions in groups.values():
        line = done.iloc[positions[0]].copy()
        if len(positions) > 1:
            line[numeric] = done.iloc[positions][numeric].mean(axis=0, skipna=True)
        lines.append(line)
    merged = [(key, len(p)) for key, p in groups.items() if len(p) > 1]
    return pd.DataFrame(lines).astype(done.dtypes.to_dict()), merged


def _per_seed(done: pd.DataFrame, metric: MetricSpec) -> dict[int, float]:
    """``{seed: value}`` of one metric (in shown units); a seed with several completed runs: their mean."""
    return per_seed_values(done, metric.column, metric.scale)


def per_seed_values(done: pd.DataFrame, column: str, scale: float) -> dict[int, float]:
    """``{seed: value x scale}`` of one run-frame column; a seed with several completed runs: their mean."""
    if done.empty or column not in done.columns:
        return {}
    values: dict[int, list[float]] = {}
    for seed, value in zip(done["seed"], done[column], strict=True):
        if not is_missing(seed) and not is_missing(value):
            values.setdefault(int(seed), []).append(float(value) * scale)
    return {s: math.fsum(v) / len(v) for s, v in values.items()}


def _compare_with_default(table: Table) -> None:
    """Paired t-test of every row against the table's default row, per metric with a seed spread."""
    spec = table.spec
    if not spec.default_row:
        return
    found = [r for r in table.rows if r.spec.id == spec.default_row and r.n_done]
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
        for metric in spec.metrics:
            if metric.with_std:
                row.cells[metric.key].test = paired_t_test(row.per_seed[metric.key], reference.per_seed[metric.key])


def _sources(paper: dict, spec: TableSpec, rows: list[Row]) -> list[str]:
    out = set()
    for row in rows:
        for metric in spec.metrics:
            _, source = paper_value(paper, spec.key, row.spec.id, metric.key)
            if source:
                out.add(source)
    if spec.mean_row:
        for metric in spec.metrics:
            _, source = paper_value(paper, spec.key, "mean", metric.key)
            if source:
                out.add(source)
    return sorted(out)


def _context(runs: pd.DataFrame) -> dict:
    done = runs[runs["status"] == "completed"] if not runs.empty else runs

    def values(column: str) -> list[str]:
        if done.empty or column not in done.columns:
            return []
        return sorted({value_text(v) for v in done[column] if not is_missing(v)})

    def precisions() -> list[str]:
        """``trainer.precision`` of the runs; bf16 with ``arch.fp32_scores`` reads "bf16 (fp32 scores)"."""
        if done.empty or "config.trainer.precision" not in done.columns:
            return []
        scores = done.get("config.arch.fp32_scores", pd.Series([None] * len(done), index=done.index))
        pairs = zip(done["config.trainer.precision"], scores, strict=True)
        return sorted({f"{p} (fp32 scores)" if p == "bf16" and not is_missing(s) and bool(s) else value_text(p)
                       for p, s in pairs if not is_missing(p)})

    asked = [int(v) for v in runs.get("n_seeds", pd.Series(dtype=object)) if not is_missing(v)]
    seeds = sorted({int(s) for s in done["seed"] if not is_missing(s)}) if not done.empty else []
    shas = sorted({str(v)[:10] for v in done.get("git_sha", []) if not is_missing(v)})
    dirty = sum(1 for v in done.get("git_dirty", []) if not is_missing(v) and bool(v))
    return {
        "git": shas,
        "git_dirty": dirty,  # completed runs from a working tree with uncommitted changes (env.git_dirty)
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


def build_table(runs: pd.DataFrame, spec: TableSpec, paper: pd.DataFrame | dict) -> Table:
    """The table of one experiment: the paper's rows (missing ones included), then any other rows found."""
    paper = paper_lookup(paper) if isinstance(paper, pd.DataFrame) else paper
    runs = generated_roots(runs.reset_index(drop=True))
    keys = [spec.key_of(r) for _, r in runs.iterrows()] if not runs.empty else []
    by_key: dict = {}
    for index, key in enumerate(keys):
        by_key.setdefault(key, []).append(index)
    columns = comparable_columns(runs)
    ordered = [row_spec.key for row_spec in spec.rows]
    extra = sorted((k for k in by_key if k is not None and k not in ordered), key=value_text)
    table = Table(spec=spec, rows=[], context=_context(runs))
    split_notes = []
    for key in [*ordered, *extra]:
        row_spec = spec.row_for(key)
        group = runs.iloc[by_key.get(key, [])]
        variants, differing = split_variants(group, columns) if not row_spec.paper_only else ([("", group)], [])
        if len(variants) > 1:
            note = (
                f"{row_spec.name}: runs differ in {key_list(differing)} — not averaged together, shown as "
                "separate rows."
            )
            split_notes.append((note, differing))
        for variant, part in variants:
            row = _row(spec, row_spec, part, paper, variant)
            if row.n_asked is None and not row_spec.paper_only:
                row.n_asked = table.context["n_asked"]
            table.rows.append(row)
    if None in by_key:
        orphans = runs.iloc[by_key[None]]
        cols = ", ".join(key_name(c) for c in spec.key_columns)
        for _, r in orphans.iterrows():
            table.notes.append(
                f"Run `{r['run_dir']}` ({r['status']}) lacks {cols} in its config: not placed in a "
                f"row{': ' + r['error'] if r['error'] else ''}."
            )
    if spec.mean_row:
        table.mean_row = _mean_row(spec, table.rows, paper)
    _annotate(table, runs, columns, split_notes)
    _compare_with_default(table)
    table.sources = _sources(paper, spec, table.rows)
    return table


def _mean_row(spec: TableSpec, rows: list[Row], paper: dict) -> Row:
    """The mean over the paper's rows (e.g. the four CIFAR-10 splits) of our per-row means."""
    row_spec = RowSpec("mean", ("mean",), ("mean",), f"mean of the {len(spec.rows)} rows", short="mean")
    row = Row(spec=row_spec)
    for metric in spec.metrics:
        means = []
        for canonical in spec.rows:  # one value per paper row; a row split into variants has none
            found = [r.cells[metric.key].mean for r in rows if r.spec == canonical]
            if len(found) == 1 and found[0] is not None:
                means.append(found[0])
        cell = Cell()
        if means and len(means) == len(spec.rows):
            cell = Cell(mean=math.fsum(means) / len(means), std=None, n=len(means))
        cell.paper, _ = paper_value(paper, spec.key, "mean", metric.key)
        cell.paper_text = paper_text(paper, spec.key, "mean", metric.key)
        row.cells[metric.key] = cell
    return row


def _annotate(
    table: Table, runs: pd.DataFrame, columns: list[str], split_notes: list[tuple[str, list[str]]]
) -> None:
    spec = table.spec
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
        for checkpoint, count in row.merged:
            table.notes.append(
                f"{row.name}: {count} records of one trained model (checkpoint `{checkpoint}`) count once "
                "(one replicate, their numbers averaged): evaluating a checkpoint again adds no seed."
            )
        if row.duplicate_seeds:
            table.notes.append(
                f"{row.name}: seed(s) {', '.join(map(str, row.duplicate_seeds))} have more than one "
                "completed run; all are averaged."
            )
    table.notes.extend(note for note, _ in split_notes)
    split_columns = {c for _, cols in split_notes for c in cols}
    if spec.row_prefixes and not runs.empty:
        done = runs[runs["status"] == "completed"]
        across = []
        for column in columns:
            if column in split_columns or any(
                column == p or column.startswith(p + ".") for p in spec.row_prefixes
            ):
                continue
            texts = sorted({value_text(v) for v in done[column]}) if not done.empty else []
            if len(texts) > 1:
                across.append(f"{key_name(column)} ({', '.join(texts)})")
        if across:
            table.notes.append(
                "Rows were run with different settings besides the table's own keys: "
                + "; ".join(across)
                + ". Compare rows with care."
            )
    ctx = table.context
    if spec.paper_dataset and ctx["n_done"]:
        datasets, profiles = ctx["datasets"], ctx["profiles"]
        if datasets != [spec.paper_dataset] or profiles != ["paper"]:
            table.notes.append(
                f"These runs use data={'/'.join(datasets) or '?'}, profile={'/'.join(profiles) or '?'};"
                f" the paper's numbers are {spec.paper_dataset} at the paper's recipe: compare trends, "
                "not values."
            )
    if GFLOPS in spec.metrics:
        counted = sorted({str(v) for v in runs.get("complexity.flops_counted", []) if not is_missing(v)})
        if counted:
            table.notes.append("What our GFLOPs count: " + "; ".join(counted) + ".")
    table.notes.extend(spec.notes)


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
    """One table per experiment present: the declared table for known experiments, a generic one otherwise."""
    runs = tabulated(frame)
    if runs.empty:
        return []
    lookup = paper_lookup(paper)
    declared = specs_by_experiment()
    experiments = {e for e in runs["experiment"] if not is_missing(e)}
    order = [e for e in declared if e in experiments] + sorted(experiments - set(declared))
    if runs["experiment"].map(is_missing).any():
        order.append(None)
    tables = []
    for experiment in order:
        mask = runs["experiment"].map(is_missing) if experiment is None else runs["experiment"] == experiment
        sub = runs[mask]
        spec = declared.get(experiment) if experiment else None
        if spec is None:
            spec = generic_table(experiment, _generic_metrics(sub))
        tables.append(build_table(sub, spec, lookup))
    return tables


def delta(cell: Cell, metric: MetricSpec) -> float | None:
    """Ours − paper, from our value rounded as shown (so the columns add up as read)."""
    if cell.mean is None or cell.paper is None:
        return None
    return round(round(cell.mean, metric.decimals) - cell.paper, metric.decimals)


def summary_frame(tables: list[Table]) -> pd.DataFrame:
    """One line per (table, row, metric): ours mean/std/n, the paper, Δ — the tables in long form."""
    lines = []
    for table in tables:
        for row in [*table.rows, *([table.mean_row] if table.mean_row else [])]:
            for metric in table.spec.metrics:
                cell = row.cells[metric.key]
                lines.append(
                    {
                        "table": table.key,
                        "experiment": table.spec.experiment,
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
