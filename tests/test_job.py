"""The main job end to end on tiny data: record, failures, skip-done, resume, complexity."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench import checkpoint
from bench.job import run
from tests.conftest import ROOT, compose_cfg

SMOKE = ["profile=smoke", "data.generator.n_train=4"]


def _env(tmp_path):
    return {**os.environ, "UNIAD_BENCH_DATA": str(tmp_path / "datasets"), "UNIAD_BENCH_CACHE": str(tmp_path / "cache")}


@pytest.mark.slow
def test_cli_smoke_run_writes_the_record(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "bench", *SMOKE, f"hydra.run.dir={run_dir}", "eval.save_maps=1"],
                          cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"record: {run_dir}/metrics.json" in proc.stdout
    assert "| mean" in proc.stdout
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["task"] == "fit"
    assert record["experiment"] is None and record["seed"] == 133
    assert "profile=smoke" in record["overrides"]
    assert record["config"]["model"]["name"] == "uniad" and record["config"]["decoder"]["design"] == "lqd_a"
    per_class = record["metrics"]["per_class"]
    assert len(per_class) >= 4
    for values in [*per_class.values(), record["metrics"]["mean"]]:
        assert set(values) == {"image_auroc", "pixel_auroc"}
        assert all(0.0 <= v <= 1.0 for v in values.values())
    mean = sum(m["image_auroc"] for m in per_class.values()) / len(per_class)
    assert record["metrics"]["mean"]["image_auroc"] == pytest.approx(mean)
    assert record["complexity"]["learnable_params"] > 0 and record["complexity"]["gflops"] > 0
    assert record["timing"]["fit_s"] > 0 and record["env"]["torch"]
    assert (run_dir / "last.ckpt").is_file()
    assert list((run_dir / "maps").rglob("*.npz"))


def test_complexity_at_the_paper_config_counts_the_official_parameters(tmp_path):
    cfg = compose_cfg(["task=complexity", "backbone=efficientnet_b4", "backbone.weights=none"])
    record = run(cfg, tmp_path / "run")
    assert record["status"] == "completed"
    assert record["complexity"]["learnable_params"] == 7_717_392
    # truncated EfficientNet-b4 (1.84 G) + reconstruction (3.40 G), as the official code counts them
    assert record["complexity"]["gflops"] == pytest.approx(5.244, abs=0.01)
    assert record["metrics"] is None


@pytest.mark.slow  # a subprocess end to end: make test, not the fast tier
def test_missing_dataset_fails_in_one_line_and_keeps_a_failed_record(tmp_path):
    run_dir = tmp_path / "run"
    missing = tmp_path / "nowhere"
    proc = subprocess.run([sys.executable, "-m", "bench", "data=mvtec", f"data.root={missing}", "profile=smoke",
                           f"hydra.run.dir={run_dir}"], cwd=ROOT, env=_env(tmp_path), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and str(missing) in error_lines[0]
    assert "Traceback" not in proc.stderr
    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "failed" and str(missing) in record["error"]


@pytest.mark.slow  # a subprocess end to end: make test, not the fast tier
def test_unknown_option_names_the_choices(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "bench", "decoder=lqd_z", f"hydra.run.dir={tmp_path}"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "lqd_a" in proc.stderr


@pytest.mark.slow
def test_nan_loss_fails_the_job(tmp_paths, monkeypatch):
    import torch

    from models.losses import MSELoss

    monkeypatch.setattr(MSELoss, "forward", lambda self, a, b: (a - b).sum() * torch.tensor(float("nan")))
    cfg = compose_cfg(SMOKE)
    with pytest.raises(FloatingPointError, match="trainer.lr"):
        run(cfg, tmp_paths / "run")
    record = json.loads((tmp_paths / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and "FloatingPointError" in record["error"]


@pytest.mark.slow
def test_skip_done_and_resume_give_the_uninterrupted_record(tmp_paths, monkeypatch):
    overrides = [*SMOKE, "trainer.epochs=3", "trainer.ckpt_every=1", "cache.features=false"]
    reference = run(compose_cfg(overrides), tmp_paths / "reference")
    assert reference["status"] == "completed"
    # the same run dir again: skipped, nothing recomputed
    again = run(compose_cfg(overrides), tmp_paths / "reference")
    assert again.get("skipped") is True

    # a job killed right after its epoch-1 checkpoint ...
    save = checkpoint.save

    def save_then_die(path, **payload):
        save(path, **payload)
        if payload["epoch"] == 1:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(checkpoint, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        run(compose_cfg(overrides), tmp_paths / "resumed")
    monkeypatch.setattr(checkpoint, "save", save)
    # ... restarted in the same run dir continues at epoch 2 and ends with the same metrics
    resumed = run(compose_cfg(overrides), tmp_paths / "resumed")
    assert resumed["timing"]["epochs_run"] == 1
    assert resumed["metrics"] == reference["metrics"]


def test_corrupt_checkpoint_is_named(tmp_paths):
    run_dir = tmp_paths / "run"
    run_dir.mkdir()
    (run_dir / "last.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception, match="last.ckpt"):
        run(compose_cfg(SMOKE), run_dir)
