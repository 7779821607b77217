"""``python -m reports``: run records → one DataFrame → the paper's tables S2–S7 (Markdown, LaTeX, CSV)
beside the paper's numbers, per-class tables, and figures.

Modules: :mod:`reports.collect` (find and load records), :mod:`reports.table_files` (the tables as
declared in ``conf/experiment/*.yaml``), :mod:`reports.paper` (the paper's numbers, from those files),
:mod:`reports.layouts` (the tables' rows and columns), :mod:`reports.stats` (intervals, paired tests),
:mod:`reports.tables` (aggregation, Markdown),
:mod:`reports.latex` (Styler → booktabs), :mod:`reports.figures` (PNG), :mod:`reports.report` (files).
"""

from reports.collect import collect, failed_runs, find_records, load_record, records_frame
from reports.paper import load_paper
from reports.report import build_report, latex_report, markdown_report, write_report
from reports.tables import aggregate, build_tables, grid_markdown, table_grids

__all__ = [
    "aggregate",
    "build_report",
    "build_tables",
    "collect",
    "failed_runs",
    "find_records",
    "grid_markdown",
    "latex_report",
    "load_paper",
    "load_record",
    "markdown_report",
    "records_frame",
    "table_grids",
    "write_report",
]
