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
