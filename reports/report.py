"""The report pipeline, what ``python -m reports`` does, as importable functions: collect the records
(:mod:`reports.collect`) → aggregate them into the declared tables (:mod:`reports.declaration`,
:mod:`reports.aggregate`) → grids (:mod:`reports.grid`) → Markdown, LaTeX, CSV and figures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from reports.aggregate import Table, build_tables, summary_frame
from reports.collect import CHOICE, IDENTITY_COLUMNS, Collection, collect, is_missing
from reports.grid import Grid, main_grid, per_class_grids
from reports.latex import latex_document
from reports.markdown import grid_section
from reports.paper import load_paper
from reports.protocol import protocol_grids

FORMATS = ("md", "tex", "csv", "png")
RESULT_CONFIG_COLUMNS = (
    "config.model.name",
    "config.decoder.design",
    "config.model.nma",
    "config.model.fj",
    "config.loss.name",
    "config.backbone.name",
    "config.backbone.frozen",
    "config.data.name",
    "config.data.normal_classes",
    "config.data.image_size",
    "config.profile_name",
    "config.trainer.epochs",
)


@dataclass
class Report:
    collection: Collection
    tables: list[Table]
    main: list[Grid] = field(default_factory=list)
    per_class: list[Grid] = field(default_factory=list)

    @property
    def frame(self) -> pd.DataFrame:
        return self.collection.frame


def build_report(paths: Iterable[str | Path], paper: pd.DataFrame | None = None) -> Report:
    collection = collect(paths)
    tables = build_tables(collection.frame, load_paper() if paper is None else paper)
    return Report(
        collection=collection,
        tables=tables,
        # + what other protocols would report from the same runs (test curves, conventions)
        main=[main_grid(t) for t in tables] + [g for t in tables for g in protocol_grids(t)],
        per_class=[g for t in tables for g in per_class_grids(t)],
    )


def _header(report: Report) -> list[str]:
    frame = report.frame
    n = len(frame)
    done = int((frame["status"] == "completed").sum()) if n else 0
    roots = ", ".join(f"`{r}`" for r in report.collection.roots)
    unreadable = f", {len(report.collection.unreadable)} unreadable" if report.collection.unreadable else ""
    lines = [
        "# UniAD Bench results",
        "",
        f"Scanned {roots}: {n} run record(s), {done} completed, {n - done} not completed{unreadable}.",
    ]
    if report.collection.unreadable:
        lines += [
            "",
            "Unreadable records (not counted):",
            *(f"- `{p}`: {why}" for p, why in report.collection.unreadable),
        ]
    if n:
        other = frame[
            frame["task"].map(lambda t: not is_missing(t) and t not in ("fit", "eval", "complexity"))
        ]
        if not other.empty:
            counts = other.groupby("task").size()
            lines += [
                "",
                "Not tabulated (tasks without metrics): "
                + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))
                + ".",
            ]
    if not report.tables:
        lines += ["", "No run to tabulate."]
    return lines


def markdown_report(report: Report, per_class: bool = True) -> str:
    parts = ["\n".join(_header(report))]
    parts += [grid_section(g, level=2) for g in report.main]
    if per_class and report.per_class:
        parts.append("## Per-class results")
        parts += [grid_section(g, level=3) for g in report.per_class]
    return "\n\n".join(parts) + "\n"


def latex_report(report: Report) -> str:
    return latex_document([*report.main, *report.per_class])


def results_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per run for ``results.csv``: identity, the configs' table keys, metrics and complexity."""
    if frame.empty:
        return frame
    columns = [
        *IDENTITY_COLUMNS,
        *sorted(c for c in frame.columns if c.startswith(CHOICE)),
        *(c for c in RESULT_CONFIG_COLUMNS if c in frame.columns),
        *(c for c in frame.columns if c.startswith(("metric.", "complexity."))),
    ]
    out = frame[columns].copy()
    out["overrides"] = out["overrides"].map(lambda o: " ".join(o) if isinstance(o, tuple) else "")
    for column in out.columns:
        if out[column].map(lambda v: isinstance(v, tuple)).any():
            out[column] = out[column].map(
                lambda v: "[" + ",".join(map(str, v)) + "]" if isinstance(v, tuple) else v
            )
    return out


def per_class_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Long form of the per-class metrics: run_dir, experiment, seed, category, metric, value."""
    lines = []
    for _, run in frame.iterrows():
        for column in frame.columns:
            if column.startswith("per_class.") and not is_missing(run[column]):
                category, metric = column[len("per_class.") :].rsplit(".", 1)
                lines.append(
                    {
                        "run_dir": run["run_dir"],
                        "experiment": run["experiment"],
                        "seed": run["seed"],
                        "category": category,
                        "metric": metric,
                        "value": run[column],
                    }
                )
    return pd.DataFrame(lines, columns=["run_dir", "experiment", "seed", "category", "metric", "value"])


def parse_formats(text: str | Iterable[str]) -> list[str]:
    items = [f.strip().lower() for f in (text.split(",") if isinstance(text, str) else text) if f.strip()]
    unknown = [f for f in items if f not in FORMATS]
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(unknown)}; choose from {','.join(FORMATS)}")
    return items


def write_report(
    report: Report, out: str | Path, formats: Iterable[str] = FORMATS, max_map_runs: int = 6
) -> list[Path]:
    """Write tables.md, tables.tex, results.csv (+ summary.csv, per_class.csv) and figures/ into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    formats = parse_formats(formats)
    written = []
    if "md" in formats:
        written.append(_write_text(out / "tables.md", markdown_report(report)))
    if "tex" in formats:
        written.append(_write_text(out / "tables.tex", latex_report(report)))
    if "csv" in formats:
        for name, frame in (
            ("results.csv", results_frame(report.frame)),
            ("summary.csv", summary_frame(report.tables)),
            ("per_class.csv", per_class_frame(report.frame)),
        ):
            path = out / name
            frame.to_csv(path, index=False, lineterminator="\n")
            written.append(path)
    if "png" in formats:
        from reports.figures import write_figures  # matplotlib only when figures are asked for

        written += write_figures(report.tables, report.frame, out / "figures", max_map_runs=max_map_runs)
    return written


def _write_text(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="\n")
    return path
