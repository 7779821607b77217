"""Sweeps end to end: an experiment renders its table, reruns skip done cells, failures are isolated."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

TINY = ["profile=smoke", "data.generator.n_train=4", "trainer.epochs=1"]


def _bench(args, tmp_path, timeout=600):
    env = {**os.environ, "UNIAD_BENCH_DATA": str(tmp_path / "datasets"), "UNIAD_BENCH_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
def test_ablation_sweep_renders_s2_and_a_rerun_skips_every_cell(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", "+experiment=ablation", *TINY, "seed=1,2", f"hydra.sweep.dir={sweep}"]
    first = _bench(args, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    records = sorted(sweep.rglob("metrics.json"))
    assert len(records) == 18
    for path in records:
        record = json.loads(path.read_text())
        assert record["status"] == "completed" and record["experiment"] == "ablation"
        assert path.parent.name == f"seed={record['seed']}"
    # a row's run dir names the overrides its table declares for it (conf/experiment/ablation.yaml, row 9)
    assert any("decoder.design=lqd_a,model.fj=true,model.nma=true" in p.parent.parent.name for p in records)

    out = tmp_path / "report"
    rep = subprocess.run([sys.executable, "-m", "reports", str(sweep), "--out", str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr[-2000:]
    md = (out / "tables.md").read_text()
    assert "S2" in md and md.count("(n=2)") >= 9 * 2
    assert (out / "tables.tex").is_file() and (out / "results.csv").is_file()

    again = _bench(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("skip:") == 18


@pytest.mark.slow
def test_a_failing_cell_does_not_stop_the_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _bench(["-m", *TINY, "data.generator.n_test_good=0,1", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 1
    statuses = sorted(json.loads(p.read_text())["status"] for p in sweep.rglob("metrics.json"))
    assert statuses == ["completed", "failed"]
    assert "failed cells" in proc.stderr and "n_test_good=0" in proc.stderr
    assert "1/2 cells completed" in proc.stdout


@pytest.mark.slow
def test_a_table_sweeps_without_dash_m_through_the_submitit_launcher(tmp_path):
    """experiment files set hydra.mode=MULTIRUN; the table sweeper hands its jobs to any launcher, and
    hydra.sweeper.select runs some rows only (S7's mlp row: task=complexity, no data, seconds)."""
    sweep = tmp_path / "sweep"
    proc = _bench(["+experiment=complexity", "profile=smoke", "hydra.sweeper.select=[mlp]", "hydra/launcher=local",
                   f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = [json.loads(p.read_text()) for p in sweep.rglob("metrics.json")]
    assert record["status"] == "completed" and record["config"]["model"]["name"] == "mlp"
    assert "model=mlp" in record["overrides"]
