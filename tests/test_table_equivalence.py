"""Declaring the tables in their experiment files changed no number (issue 13, point 1).

``tests/fixtures/tables_before/`` was captured on the code before that change (rows in conf/row and the
experiments' sweep lists, layouts in Python, the paper's numbers in a CSV): for every experiment, the
resolved config of every cell (row x seed, at profile=smoke), and what the reports made of hand-made
records of those cells. Here the cells come from the tables' declarations through the sweeper's own
expansion, and must be the same; records made from them must give the same numbers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from hydra_plugins.uniad_bench_sweeper import expand, table_rows
from reports.aggregate import summary_frame
from reports.declaration import table_specs
from reports.latex import tex_escape
from reports.report import build_report, latex_report, markdown_report
from tests.conftest import CONF
from tests.table_cells import canonical_config, records_from_cells

FIXTURE = Path(__file__).parent / "fixtures" / "tables_before"
BEFORE = json.loads((FIXTURE / "cells.json").read_text())
# what summary.csv held before the change (later columns, e.g. the 95% interval, are additions)
# Tables that grew on purpose after the capture (issue 15 added PatchCore and PaDiM, and S7 a stored-statistics
# column with PaDiM measured instead of quoted): their earlier cells must still run and their earlier rows keep
# their numbers; their rendering, which gained rows and a column, is not compared.
GREW = {"baselines": "C.1", "complexity": "S7"}
CHANGED_ROWS = {("S7", "PaDiM")}  # was a paper-only row, is now a measured one
SUMMARY_COLUMNS = ["table", "experiment", "row", "variant", "metric", "unit", "mean", "std", "n", "n_asked",
                   "n_failed", "paper", "delta", "paper_only"]


def cells_now(experiment: str) -> list[str]:
    """Every cell the sweep of ``+experiment=<experiment> profile=smoke`` runs, as canonical configs."""
    decl = next(d for d in table_specs() if d.experiment == experiment)
    raw = OmegaConf.load(decl.path).hydra.sweeper
    seeds = [f"seed={s}" for s in decl.seeds] or [None]
    combos = [[f"+experiment={experiment}", "profile=smoke", *([s] if s else [])] for s in seeds]
    cells = []
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        for overrides in expand(table_rows(raw.table), combos):
            cfg = compose("config", overrides=overrides)
            cells.append(canonical_config(OmegaConf.to_container(cfg, resolve=True)))
    return sorted(cells)


@pytest.fixture(scope="module")
def now() -> dict[str, list[str]]:
    return {experiment: cells_now(experiment) for experiment in BEFORE}


@pytest.mark.slow
def test_every_experiment_runs_the_same_cells_as_before(now):
    assert set(BEFORE) <= {d.experiment for d in table_specs()}
    for experiment, cells in BEFORE.items():
        if experiment in GREW:
            missing = [c for c in cells if c not in set(now[experiment])]
            assert not missing, f"{experiment}: {len(missing)} earlier cells are no longer run"
            continue
        assert len(now[experiment]) == len(cells), experiment
        assert now[experiment] == cells, f"{experiment}: the sweep's cells changed"


@pytest.mark.slow
def test_records_of_those_cells_give_the_same_numbers(now, tmp_path):
    records_from_cells(now, tmp_path)
    report = build_report([tmp_path])
    got = summary_frame(report.tables)[SUMMARY_COLUMNS].to_csv(index=False, lineterminator="\n")
    want = pd.read_csv(FIXTURE / "summary.csv", dtype=str, keep_default_na=False)
    got = pd.read_csv(pd.io.common.StringIO(got), dtype=str, keep_default_na=False)
    want = want[SUMMARY_COLUMNS]
    earlier = {cell for cell in _cells(want) if cell[:2] not in CHANGED_ROWS}
    keep = [cell in earlier for cell in _cells(got)]
    want = want[[cell in earlier for cell in _cells(want)]]
    pd.testing.assert_frame_equal(got[keep].reset_index(drop=True), want.reset_index(drop=True))
    md = _without_grown(markdown_report(report).replace(str(tmp_path), "<root>"))
    tex = _without_grown(latex_report(report).replace(tex_escape(str(tmp_path)), "<root>"))
    assert _without_additions(md) == _without_additions(_without_grown((FIXTURE / "tables.md").read_text()))
    assert _without_additions(tex) == _without_additions(_without_grown((FIXTURE / "tables.tex").read_text()))


def _cells(summary: pd.DataFrame) -> list[tuple]:
    return list(summary[["table", "row", "metric"]].itertuples(index=False, name=None))


def _without_grown(text: str) -> str:
    """The rendering less the sections of the tables in GREW (Markdown "## Table X", LaTeX table floats)."""
    marks = [m for key in GREW.values() for m in (f"## Table {key} ", f"\\caption{{Table {key} reproduced")]
    if "\\begin{table}" in text:
        parts = re.split(r"(?=\\begin\{table\})", text)
    else:
        parts = re.split(r"(?=^## )", text, flags=re.M)
    text = "".join(p for p in parts if not any(m in p for m in marks))
    return re.sub(r"\d+ run record\(s\), \d+ complete", "<counts>", text)  # the grown tables' runs count too


def _without_additions(text: str) -> str:
    """The rendering less what was added on purpose after the capture (issue 12 point 4, issue 14 point 5,
    the precision, the page fit): 95% intervals, the marks and legend of the comparison with the default
    row, the precision, "± 0.0" dropped for one seed, the LaTeX that fits tables to the page (preamble,
    fitwidth, landscape, headers over several lines); and column padding, which follows the cells' widths."""
    text = re.sub(r"\\usepackage\{graphicx\}\n.*?(?=\n\\begin\{document\})", "", text, flags=re.S)  # fit preamble
    text = re.sub(r"\\(begin|end)\{fitwidth\}(\{[^}]*\})?\n", "", text)
    landscape = "\\begin{table}[p]\n\\begin{sideways}\\begin{minipage}{\\textheight}\n"
    text = text.replace(landscape, "\\begin{table}[htbp]\n")
    text = text.replace("\\end{minipage}\\end{sideways}\n", "")
    text = re.sub(r"\\stackhead\{(.*?)\}(?= &| \\\\)", lambda m: m.group(1).replace("\\\\", " "), text)  # headers
    text = re.sub(r" \[-?\d+\.\d+, -?\d+\.\d+\]", "", text)  # intervals
    text = re.sub(r"†|‡|\$\^\\(dagger|ddagger)\$", "", text)  # marks
    text = re.sub(r" \[a, b\] = 95\\?% t-interval of the mean over seeds\..*?(?= Paper:|\}?\n)", "", text)
    text = re.sub(r"precision: not recorded; ", "", text)
    text = re.sub(r" (?:±|\$\\pm\$) 0\.0 \(n=1\)", " (n=1)", text)
    text = re.sub(r" *\| *", "|", text)
    return re.sub(r"-{3,}:?", "-", text)
