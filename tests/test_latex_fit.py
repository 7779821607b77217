"""tables.tex compiles with pdflatex and every table fits the page: wide tables go on a landscape page
and are scaled to its line, so no column falls off (pdflatex's log names each box that overflows)."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from reports.report import build_report, write_report
from tests.test_reports import make_runs

pytestmark = pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
FIT = re.compile(r"fitwidth: (\S+) natural ([\d.]+)pt line ([\d.]+)pt")


def _compile(tex_dir) -> str:
    proc = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "tables.tex"],
        cwd=tex_dir, capture_output=True, text=True, timeout=240,
    )
    log = (tex_dir / "tables.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    return log


def test_every_table_of_the_compiled_pdf_fits_the_page(tmp_path):
    runs = make_runs(tmp_path / "records")
    report = build_report([runs / "multirun", runs / "outputs"])
    write_report(report, tmp_path / "out", ["tex"])
    log = _compile(tmp_path / "out")
    overfull = re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)
    assert not overfull, f"boxes wider than their line by {overfull} pt"
    fits = {label: (float(natural), float(line)) for label, natural, line in FIT.findall(log)}
    assert len(fits) == len(report.main) + len(report.per_class)
    natural, line = fits["tab:S7"]  # the widest: three metrics x ours, paper, delta
    assert natural > fits["tab:C.4"][1] and line > 600  # wider than the text: turned to landscape
    assert "\\stackhead{Stored\\\\statistics" in (tmp_path / "out" / "tables.tex").read_text()  # long headers stacked
    assert fits["tab:C.4"][0] < fits["tab:C.4"][1] < 600  # a narrow table stays upright, unscaled
    assert (tmp_path / "out" / "tables.pdf").read_bytes()[:5] == b"%PDF-"
