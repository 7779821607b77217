"""+experiment=benchmarks: UniAD on MVTec AD, VisA and Real-IAD with all metrics and mAD beside the
published figures (conf/experiment/benchmarks.yaml)."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from metrics import mad_members
from reports.collect import record_row
from reports.declaration import table_specs
from tests.benchmark_fixtures import make_visa
from tests.conftest import ROOT

MAD_OF = mad_members()


def _table():
    return next(t for t in table_specs() if t.experiment == "benchmarks")


def test_one_run_row_per_dataset_and_sourced_paper_rows():
    table = _table()
    runs = [r for r in table.rows if not r.paper_only]
    assert [r.overrides for r in runs] == [("data=mvtec",), ("data=visa",), ("data=realiad",)]
    assert [m.key for m in table.metrics] == [*MAD_OF, "mad"]
    for row in table.rows:
        if row.paper:
            assert row.paper_source, row.id  # every published figure names where it comes from
        if "mad" in row.paper:  # a transcription error shows as a mAD that is not the mean of the seven
            assert abs(row.paper["mad"] - sum(row.paper[m] for m in MAD_OF) / 7) < 0.06, row.id


def test_mad_is_the_mean_of_the_seven_when_a_run_has_them_all():
    values = dict(zip(MAD_OF, (0.9, 0.8, 0.7, 0.95, 0.3, 0.35, 0.85), strict=True))
    row = record_row({"status": "completed", "metrics": {"mean": values}}, "run")
    assert math.isclose(row["metric.mad"], sum(values.values()) / 7)
    del values["pixel_aupro"]
    assert "metric.mad" not in record_row({"status": "completed", "metrics": {"mean": values}}, "run")


@pytest.mark.slow
def test_the_visa_row_runs_and_renders_with_its_mad(tmp_path):
    root = tmp_path / "VisA"
    root.mkdir()
    make_visa(root)
    env = {**os.environ, "UNIAD_BENCH_DATA": str(tmp_path / "datasets"), "UNIAD_BENCH_CACHE": str(tmp_path / "cache")}
    sweep, out = tmp_path / "sweep", tmp_path / "report"
    run = subprocess.run([sys.executable, "-m", "bench", "+experiment=benchmarks", "profile=smoke",
                          "backbone=efficientnet_lite0", "trainer.epochs=1", "hydra.sweeper.select=[visa]",
                          f"data.root={root}", f"hydra.sweep.dir={sweep}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rep = subprocess.run([sys.executable, "-m", "reports", str(sweep), "--out", str(out)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    md = (out / "tables.md").read_text()
    visa = next(line for line in md.splitlines() if line.startswith("| VisA     | ours"))
    cells = [c.strip() for c in visa.strip("|").split("|")]
    ours = [float(c.split()[0]) for c in cells[2::3][:8]]  # the "ours" cell of each of the 8 metrics
    assert abs(ours[7] - sum(ours[:7]) / 7) < 0.06
    ader = next(line for line in md.splitlines() if line.startswith("| VisA     | ADer paper"))
    assert [c.strip() for c in ader.strip("|").split("|")][3] == "88.8"  # its image AUROC, the paper column
