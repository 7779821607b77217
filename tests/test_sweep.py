"""Sweeps end to end: an experiment renders its table, reruns skip done cells, failures are isolated."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

TINY = ["profile=smoke", "data.generator.n_train=4", "trainer.epochs=1"]


def _bench(args, tmp_path, timeout=600, data=None):
    env = {**os.environ, "UNIAD_BENCH_DATA": str(data or tmp_path / "datasets"),
           "UNIAD_BENCH_CACHE": str(tmp_path / "cache")}
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
    assert again.stdout.count("skipped: already completed with this config") == 18
    assert f"sweep {sweep}: 18/18 cells completed" in again.stdout and "  skipped     18" in again.stdout


@pytest.mark.slow
def test_a_failing_cell_does_not_stop_the_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    proc = _bench(["-m", *TINY, "data.generator.n_test_good=0,1", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 1
    statuses = sorted(json.loads(p.read_text())["status"] for p in sweep.rglob("metrics.json"))
    assert statuses == ["completed", "failed"]
    assert "failed cells:\n  " in proc.stderr and "n_test_good=0" in proc.stderr
    assert "1/2 cells completed" in proc.stdout and "  failed       1" in proc.stdout


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


def _subdir(overrides: list[str], data: str, monkeypatch) -> str:
    from tests.conftest import compose_cfg

    monkeypatch.setenv("UNIAD_BENCH_DATA", data)
    return str(compose_cfg(overrides, hydra=True).hydra.sweep.subdir)


def test_a_cell_run_dir_names_the_resolved_data_root_beside_the_typed_overrides(monkeypatch):
    a = _subdir(["model.fj=false"], "/data/copy1", monkeypatch)
    b = _subdir(["model.fj=false"], "/data/copy2", monkeypatch)
    assert a != b  # UNIAD_BENCH_DATA is not on the command line, yet it decides the numbers
    assert a == _subdir(["model.fj=false"], "/data/copy1", monkeypatch)  # a rerun finds its cells
    name, seed = a.split("/")
    assert name.startswith("model.fj=false@data-") and seed == "seed=133"  # the typed overrides stay readable


def test_the_default_sweep_dir_names_the_experiment_and_the_profile():
    from tests.conftest import compose_cfg

    dirs = {p: str(compose_cfg(["+experiment=ablation", f"profile={p}"], hydra=True).hydra.sweep.dir)
            for p in ("smoke", "demo")}
    assert dirs == {"smoke": "multirun/ablation-smoke", "demo": "multirun/ablation-demo"}


@pytest.mark.parametrize("typed, said", [
    (["+experiment=loss", "loss=mse"], "error: loss is set by the table's rows; drop it from the command line"),
    (["+experiment=loss", "hydra.sweeper.select=[9]"], "error: hydra.sweeper.select: no row 9 in table S4"),
])
def test_a_table_sweep_typed_wrong_stops_in_one_line(tmp_path, typed, said):
    proc = _bench(["-m", *TINY, *typed, f"hydra.sweep.dir={tmp_path / 'sweep'}"], tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert said in proc.stderr and not (tmp_path / "sweep").exists()


def test_a_sweep_dir_of_another_profile_is_refused_before_any_job(tmp_path):
    sweep = tmp_path / "sweep"
    (sweep / "cell" / "seed=1").mkdir(parents=True)
    (sweep / "cell" / "seed=1" / "metrics.json").write_text(json.dumps({"status": "completed",
                                                                        "config": {"profile_name": "demo"}}))
    proc = _bench(["-m", *TINY, "model.fj=true,false", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "profile demo" in proc.stderr and "profile smoke" in proc.stderr and "job 1/" not in proc.stdout
    assert not (tmp_path / "datasets").exists()  # refused before any job


def test_the_estimate_scales_recorded_rates_of_the_profile(tmp_path):
    from bench.sweep_plan import estimate

    def record(profile, total, fit, epochs):
        return {"status": "completed", "config": {"profile_name": profile},
                "timing": {"total_s": total, "fit_s": fit, "epochs_run": epochs}}

    failed = {"status": "failed", "config": {"profile_name": "smoke"}}
    for i, rec in enumerate([record("smoke", 12.0, 10.0, 5), record("smoke", 14.0, 10.0, 5),
                             record("demo", 500.0, 400.0, 80), failed]):
        (tmp_path / f"r{i}").mkdir()
        (tmp_path / f"r{i}" / "metrics.json").write_text(json.dumps(rec))
    assert estimate([tmp_path], "smoke", 10) == (23.0, 2)  # median of 2 + 2 s/epoch x 10 and 4 + 2 x 10
    assert estimate([tmp_path], "paper", 10) is None


def test_an_estimate_of_seconds_keeps_a_decimal():
    from bench.sweep_plan import _duration

    assert _duration(0.44) == "0.4 s" and _duration(7.0) == "7.0 s"  # a smoke job's time, not "0 s"
    assert _duration(45) == "45 s" and _duration(600) == "10 min" and _duration(5400) == "1.5 h"


@pytest.mark.slow
def test_a_sweep_says_where_it_stands_and_keeps_tables_in_each_jobs_log(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "model.fj=true,false", f"hydra.sweep.dir={sweep}"]
    first = _bench(args, tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    assert f"sweep {sweep}: 2 jobs, profile smoke (1 epoch), 1 at a time" in out and "no estimate yet" in out
    assert "job 1/2: " in out and "job 2/2: " in out and out.count("  completed in ") == 2
    assert "| category" not in out and "[HYDRA]" not in out + first.stderr  # tables: in the job's log only
    logs = sorted(sweep.rglob("job.log"))
    assert len(logs) == 2 and all("| category" in p.read_text() and "job " in p.read_text() for p in logs)
    assert f"sweep {sweep}: 2/2 cells completed" in out
    assert "  completed    2   ran to the end" in out and "  skipped      0" in out and "  refused      0" in out
    assert f"next: python -m reports {sweep}" in out

    again = _bench([*args, "verbose=true"], tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "estimate: ~" in again.stdout and again.stdout.count("skipped: already completed") == 2
    assert "  completed    0   ran to the end" in again.stdout and "  skipped      2" in again.stdout


@pytest.mark.slow
def test_cells_refused_as_another_configs_records_are_neither_completed_nor_a_success(tmp_path):
    """A run dir that leaves out the data root (a fixed hydra.sweep.subdir) meets the first sweep's records when
    UNIAD_BENCH_DATA points to another copy: every cell is refused, the sweep says so and exits 1."""
    sweep = tmp_path / "sweep"
    args = ["-m", *TINY, "model.fj=true,false", f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=fj-${model.fj}"]
    assert _bench(args, tmp_path).returncode == 0
    other = _bench(args, tmp_path, data=tmp_path / "copy")
    assert other.returncode == 1
    assert f"sweep {sweep}: 0/2 cells completed" in other.stdout and "  refused      2" in other.stdout
    assert other.stderr.count(": refused: ") == 2 and "completed record of another config (data.root" in other.stderr
    # and with the default run dirs, the other copy of the data gets cells of its own
    default = ["-m", *TINY, "model.fj=true", f"hydra.sweep.dir={tmp_path / 'by-data'}"]
    assert _bench(default, tmp_path).returncode == 0
    moved = _bench(default, tmp_path, data=tmp_path / "copy")
    assert moved.returncode == 0 and "job 1/1: " in moved.stdout and "  completed in " in moved.stdout
    assert len({p.parent.parent.name for p in (tmp_path / "by-data").rglob("metrics.json")}) == 2
