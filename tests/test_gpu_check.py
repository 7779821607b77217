"""The GPU check keeps every figure: a step that raises costs only itself (bench/tools/gpu_check.py)."""

from __future__ import annotations

import json

import pytest

from bench.errors import BenchError
from bench.tools import gpu_check


def _fake_perf(mode_of):
    def run_perf(overrides, args, official, device, cudnn):
        mode = mode_of(overrides)
        if mode == "bf16":
            raise RuntimeError("CUDA error: an illegal memory access was encountered\nmore lines")
        return {"train_images_per_s_cached": 100.0 if mode == "fp32" else 150.0, "train_images_per_s_uncached": 50.0,
                "config": {"backbone": "b", "weights": "none", "image_size": 8, "feature_size": [2, 2],
                           "channels": 4, "batch_size": 2, "steps": 1, "rounds": 1},
                "official_status": "not requested", "step_ms_by_phase": {"train_cached": {"step_ms": 1.0,
                                                                                          "enqueue_ms": 0.9}}}
    return run_perf


def _fake_dinomaly(args, official, device):
    raise RuntimeError("no kernel image is available for execution on the device")


def _mode_of(overrides):
    return "bf16, fp32 scores" if "arch.fp32_scores=true" in overrides else overrides[-1].split("=")[1]


def test_a_failing_step_keeps_every_other_step_and_the_exit_names_it(tmp_path, monkeypatch):
    seen_before = {}

    def run_training(overrides, device, seed):
        mode = _mode_of(overrides)
        # the report on disk already holds every earlier step when a later one starts
        seen_before[mode] = json.loads((tmp_path / "perf_gpu.json").read_text())["steps"]
        if mode == "bf16, fp32 scores":
            raise BenchError("the training failed: loss is not finite")
        return {"overrides": overrides, "metrics": {"image_auroc": 0.9 if mode == "fp32" else 0.85},
                "timing": {"fit_s": 1.0}, "precision": mode}

    def run_tests(device, select, per_test_s, log, figures, timeout_s):
        return {"command": f"pytest -k {select}", "returncode": 0, "summary": "3 passed", "outcomes": {},
                "per_test_timeout_s": per_test_s, "error": None}

    monkeypatch.setattr(gpu_check, "run_perf", _fake_perf(_mode_of))
    monkeypatch.setattr(gpu_check, "run_perf_dinomaly", _fake_dinomaly)
    monkeypatch.setattr(gpu_check, "run_training", run_training)
    monkeypatch.setattr(gpu_check, "run_tests", run_tests)
    with pytest.raises(SystemExit) as exit_info:
        gpu_check.main(["--device", "cpu", "--out", str(tmp_path)])
    assert "perf bf16" in str(exit_info.value) and "train bf16, fp32 scores" in str(exit_info.value)

    report = json.loads((tmp_path / "perf_gpu.json").read_text())
    status = {name: s["status"] for name, s in report["steps"].items()}
    assert status == {"perf fp32": "ok", "perf bf16": "failed", "perf bf16, fp32 scores": "ok",
                      "perf dinomaly": "failed", "train fp32": "ok", "train bf16": "ok",
                      "train bf16, fp32 scores": "failed", "gpu tests": "ok"}
    assert report["steps"]["perf bf16"]["error"] == "RuntimeError: CUDA error: an illegal memory access was encountered"
    assert set(report["perf"]) == {"fp32", "bf16, fp32 scores"} and set(report["training"]) == {"fp32", "bf16"}
    assert report["minus_fp32"] == {"bf16": {"image_auroc": -0.05}}
    assert report["tests"]["gpu tests"]["summary"] == "3 passed"
    assert set(seen_before["bf16"]) == {"perf fp32", "perf bf16", "perf bf16, fp32 scores", "perf dinomaly",
                                        "train fp32", "train bf16"}
    text = (tmp_path / "perf_gpu.md").read_text()
    assert "| perf bf16 | failed |" in text and "| fp32 | 100.0 |" in text and "| bf16, fp32 scores | 150.0 |" in text


def test_steps_past_the_budget_are_skipped_and_named(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check, "run_perf", _fake_perf(lambda o: "fp32"))
    monkeypatch.setattr(gpu_check, "run_perf_dinomaly", _fake_dinomaly)
    monkeypatch.setattr(gpu_check, "MIN_STEP_S", {"perf": 0, "train": 1e9, "tests": 1e9, "compile": 1e9})
    with pytest.raises(SystemExit, match="train fp32"):
        gpu_check.main(["--device", "cpu", "--out", str(tmp_path), "--budget-s", "100"])
    report = json.loads((tmp_path / "perf_gpu.json").read_text())
    assert [s["status"] for s in report["steps"].values()] == ["ok"] * 3 + ["failed"] + ["skipped"] * 4
    assert report["perf"]["fp32"]["train_images_per_s_cached"] == 100.0


def test_the_markdown_of_an_empty_report_is_written():
    text = gpu_check.markdown({"device_name": "cpu: x", "torch": "2", "wall_s": 0.1, "steps": {}})
    assert text.startswith("# UniAD Bench GPU check")


def test_run_tests_keeps_outcomes_figures_and_says_why_it_failed(tmp_path, monkeypatch):
    """A real pytest run in a subprocess (one cheap test selected), its log appended, the figures file read."""
    figures = tmp_path / "figures.json"
    figures.write_text(json.dumps({"peak": 1}))
    result = gpu_check.run_tests("cpu", "cached_features_live", 60, tmp_path / "pytest.log", figures, 300)
    assert result["error"] is None and result["figures"] == {"peak": 1}
    assert list(result["outcomes"].values()) == ["PASSED"] and "1 passed" in result["summary"]
    assert "test_cached_features_live_on_the_device" in (tmp_path / "pytest.log").read_text()
    result = gpu_check.run_tests("cpu", "no_such_test_name", 60, tmp_path / "pytest.log", figures, 300)
    assert result["error"] is None and result["returncode"] == 5  # none selected is not a failure


def test_run_tests_past_its_timeout_is_an_error_not_a_lost_report(tmp_path):
    result = gpu_check.run_tests("cpu", "cached_features_live", 60, tmp_path / "pytest.log", tmp_path / "f.json", 0.5)
    assert result["returncode"] is None and result["error"].startswith("the tests ran past 0 s")


def test_the_dry_runs_dinomaly_step_times_ours_in_each_precision_at_toy_sizes(tmp_path):
    """The real step of the dry run (no mock): Dinomaly's decoder at 4x4 tokens of 48 dims, each precision."""
    result = gpu_check.run_perf_dinomaly(gpu_check.PLANS["dry"]["dinomaly_args"], None, "cpu")
    assert set(result["phases"]) == {"train fp32", "train bf16", "infer fp32", "infer bf16"}
    assert all(p["images_per_s"] > 0 for p in result["phases"].values())
    assert result["config"]["embed_dim"] == 48 and result["config"]["hard_mining_p"] == 0.9
    text = gpu_check.markdown({"device_name": "cpu: x", "torch": "2", "wall_s": 1, "steps": {}, "dinomaly": result})
    assert "## Dinomaly's decoder step" in text and "| train bf16 |" in text
