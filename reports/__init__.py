"""``python -m reports``: run records → one DataFrame → the paper's tables S2–S7 (Markdown, LaTeX, CSV)
beside the paper's numbers, per-class tables, and figures.

One pipeline, a module per stage: :mod:`reports.collect` (find and load records into the run frame),
:mod:`reports.declaration` (each table as declared in ``conf/experiment/*.yaml``: rows, labels, metrics)
with :mod:`reports.paper` (the paper's numbers, from those files), :mod:`reports.aggregate` (numbers per
row and metric; :mod:`reports.variants` tells apart runs that may not be averaged, :mod:`reports.stats`
gives intervals and paired tests), :mod:`reports.grid` (display strings, captions, legends), then
:mod:`reports.markdown`, :mod:`reports.latex` (Styler → booktabs) and :mod:`reports.figures` (PNG);
:mod:`reports.report` runs the stages and writes the files.
"""

from importlib import import_module

# imported on first use, so that ``reports.run_record`` (the record contract that every job imports) does
# not pull in pandas and matplotlib
_HOME = {
    "aggregate": "reports.aggregate", "build_tables": "reports.aggregate", "collect": "reports.collect",
    "failed_runs": "reports.collect", "find_records": "reports.collect", "load_record": "reports.collect",
    "records_frame": "reports.collect", "table_grids": "reports.grid", "grid_markdown": "reports.markdown",
    "load_paper": "reports.paper", "build_report": "reports.report", "latex_report": "reports.report",
    "markdown_report": "reports.report", "write_report": "reports.report",
}


def __getattr__(name: str):
    if name in _HOME:
        return getattr(import_module(_HOME[name]), name)
    raise AttributeError(f"module 'reports' has no attribute {name!r}")


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
