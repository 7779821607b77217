"""eval.every: the test curve during training, without changing what training does."""

from __future__ import annotations

import json

import pytest
import torch

from bench.curve import CURVE, TestCurve
from bench.job import run
from tests.conftest import compose_cfg


class _Model(torch.nn.Module):
    pass


def _fake_evaluate(values):
    """An evaluation that draws from torch's RNG (as a DataLoader does) and returns the next value."""
    calls = []

    def evaluate_fn(detector):
        torch.rand(3)
        detector.eval()
        calls.append(values[len(calls)])
        return {"mean": {"pixel_auroc": calls[-1]}, "per_class": {}}, {"eval_s": 0.5}

    return evaluate_fn, calls


def test_curve_evaluates_every_k_epochs_restores_rng_and_train_mode(tmp_path):
    evaluate_fn, calls = _fake_evaluate([0.5, 0.6, 0.7])
    curve = TestCurve(evaluate_fn, every=2, epochs=6, run_dir=tmp_path)
    model = _Model().train()
    torch.manual_seed(0)
    expected = [torch.rand(1) for _ in range(6)]
    torch.manual_seed(0)
    drawn = []
    for epoch in range(1, 7):
        drawn.append(torch.rand(1))
        curve(epoch, model)
        assert model.training
    assert [float(x) for x in drawn] == [float(x) for x in expected]  # the evaluations drew nothing of ours
    assert calls == [0.5, 0.6]  # epochs 2 and 4; epoch 6 is the job's final evaluation
    record = curve.finish({"mean": {"pixel_auroc": 0.9}}, 0.4)
    assert [p["epoch"] for p in record["points"]] == [2, 4, 6]
    assert record["points"][-1]["mean"] == {"pixel_auroc": 0.9}
    assert record["every"] == 2 and record["eval_s_per_pass"] == 0.5
    assert json.loads((tmp_path / CURVE).read_text())["points"] == record["points"]


def test_resumed_curve_keeps_the_points_before_the_resume_and_a_fresh_run_drops_them(tmp_path):
    evaluate_fn, _ = _fake_evaluate([0.1, 0.2, 0.3, 0.4])
    first = TestCurve(evaluate_fn, every=1, epochs=5, run_dir=tmp_path)
    for epoch in (1, 2, 3):
        first(epoch, _Model())
    evaluate_fn, _ = _fake_evaluate([0.33, 0.44])
    resumed = TestCurve(evaluate_fn, every=1, epochs=5, run_dir=tmp_path)
    resumed(3, _Model())  # the checkpoint was at epoch 2: epoch 3 is trained and evaluated again
    resumed(4, _Model())
    points = resumed.finish({"mean": {"pixel_auroc": 0.5}}, None)["points"]
    assert [(p["epoch"], p["mean"]["pixel_auroc"]) for p in points] == [(1, 0.1), (2, 0.2), (3, 0.33), (4, 0.44),
                                                                           (5, 0.5)]
    evaluate_fn, _ = _fake_evaluate([0.9])
    fresh = TestCurve(evaluate_fn, every=1, epochs=2, run_dir=tmp_path)
    fresh(1, _Model())
    assert [p["epoch"] for p in fresh.finish({"mean": {}}, None)["points"]] == [1, 2]


@pytest.mark.parametrize("every", [0, -1, 2.5, True])
def test_every_must_be_a_positive_integer(tmp_path, every):
    with pytest.raises(ValueError, match="eval.every"):
        TestCurve(lambda d: None, every=every, epochs=3, run_dir=tmp_path)


@pytest.mark.slow
def test_a_run_with_a_curve_reports_what_a_run_without_one_reports(tmp_paths):
    base = ["profile=smoke", "data.generator.n_train=4", "trainer.epochs=3", "eval.metrics=all"]
    plain = run(compose_cfg(base), tmp_paths / "plain")
    curved = run(compose_cfg([*base, "eval.every=1"]), tmp_paths / "curved")
    assert plain["status"] == curved["status"] == "completed"
    assert curved["metrics"]["mean"] == plain["metrics"]["mean"]  # the headline is the last epoch's, unchanged
    assert "curve" not in plain
    points = curved["curve"]["points"]
    assert [p["epoch"] for p in points] == [1, 2, 3]
    assert points[-1]["mean"] == curved["metrics"]["mean"]
    assert set(points[0]["mean"]) == set(plain["metrics"]["mean"])
    assert curved["curve"]["eval_s_per_pass"] > 0
