"""Test curves: the test set evaluated every ``eval.every`` epochs while training (off by default).

The official UniAD (``tools/train_val.py``) evaluates the test set every ``val_freq_epoch`` = 10 epochs
and keeps the checkpoint with the best ``mean_pixel_auc``; ADer evaluates every 10 epochs and reports
each metric's maximum. The suite reports the last epoch; the curve (epoch, every metric, every
convention) lets ``reports.selection`` show what those protocols would have reported from the same
run. The headline metrics stay the last epoch's: an evaluation restores the RNG state and the train
mode, so a run with a curve trains exactly as one without (docs/metrics-and-protocols.md).

The points are written to ``<run dir>/curve.json`` as they come, so a resumed job keeps the points of
the epochs it does not retrain. ``TestCurve`` is the ``on_epoch`` callback of ``bench.fit.fit``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from bench import checkpoint
from record.atomic import write_json_atomic
from record.files import CURVE

log = logging.getLogger(__name__)

__all__ = ["CURVE", "TestCurve", "curve_point", "test_curve"]


def curve_point(epoch: int, metrics: dict, eval_s: float | None, conventions_s: float | None = None) -> dict:
    """One point of the curve: the epoch (1-based: epochs completed), the class means of every metric,
    the class means of every convention (``metrics.conventions``) and the evaluation's seconds (and those
    of the conventions within them)."""
    point = {"epoch": int(epoch), "mean": dict(metrics["mean"])}
    conventions = metrics.get("conventions")
    if conventions:
        point["conventions"] = {name: dict(values["mean"]) for name, values in conventions.items()}
    if eval_s is not None:
        point["eval_s"] = eval_s
    if conventions_s is not None:
        point["conventions_s"] = conventions_s
    return point


class TestCurve:
    """``on_epoch(epochs_done, detector)``: evaluate the test set when ``epochs_done`` is a multiple of
    ``every`` and not the last epoch (the job's final evaluation is the last point, ``finish``).

    ``evaluate_fn(detector) -> (metrics, timing)`` is ``bench.evaluate.evaluate`` bound to the test set,
    its cached features and ``cfg.eval``.
    """

    __test__ = False  # not a pytest class

    def __init__(self, evaluate_fn: Callable, every: int, epochs: int, run_dir: Path, logger=None):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"eval.every must be a positive integer or null, got {every!r}")
        self.evaluate_fn, self.every, self.epochs = evaluate_fn, every, int(epochs)
        self.path = Path(run_dir) / CURVE
        self.logger = logger
        self.points: list[dict] | None = None  # loaded on the first call (then the resume point is known)

    def _load(self, before: int) -> list[dict]:
        """Points of an earlier, interrupted run of this job for epochs < ``before`` (resume), else []."""
        try:
            saved = json.loads(self.path.read_text())
            return [p for p in saved.get("points", []) if int(p["epoch"]) < before]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return []

    def __call__(self, epochs_done: int, detector) -> None:
        if self.points is None:
            self.points = self._load(epochs_done)
        if epochs_done % self.every or epochs_done >= self.epochs:
            return
        state = checkpoint.rng_state()  # the DataLoader of the evaluation draws from torch's RNG
        try:
            metrics, timing = self.evaluate_fn(detector)
        finally:
            checkpoint.set_rng_state(state)
            detector.train()
        point = curve_point(epochs_done, metrics, timing.get("eval_s"), timing.get("conventions_s"))
        self.points.append(point)
        write_json_atomic(self.path, {"every": self.every, "points": self.points})
        shown = ", ".join(f"{k} {v:.4f}" for k, v in point["mean"].items() if isinstance(v, float))
        log.info(f"test curve, epoch {epochs_done}: {shown} ({point.get('eval_s')} s)")
        if self.logger is not None:
            self.logger.log_scalars({f"test/{k}": v for k, v in point["mean"].items()}, step=epochs_done - 1)

    def finish(self, metrics: dict, eval_s: float | None, conventions_s: float | None = None) -> dict:
        """The record's ``curve``: the points and, last, the final evaluation (the headline metrics)."""
        points = self.points if self.points is not None else self._load(self.epochs)
        points = [p for p in points if p["epoch"] < self.epochs]
        points.append(curve_point(self.epochs, metrics, eval_s, conventions_s))
        write_json_atomic(self.path, {"every": self.every, "points": points})
        times = [p["eval_s"] for p in points[:-1] if p.get("eval_s") is not None]
        return {"every": self.every, "points": points,
                "eval_s_per_pass": round(sum(times) / len(times), 3) if times else None}


def test_curve(cfg, run_dir: Path, test_set, features_fn: Callable, device, logger=None) -> TestCurve | None:
    """The job's curve callback under ``eval.every`` (None when it is null).

    ``features_fn()``: the test set's cached features (or None), read on the first evaluation (inside
    its saved RNG state, so training draws what it draws without a curve).
    """
    every = cfg.eval.every
    if every is None:
        return None
    from bench.evaluate import evaluate

    cache: list = []

    def evaluate_fn(detector):
        if not cache:
            cache.append(features_fn())
        return evaluate(detector, test_set, cfg.eval, device=device, features=cache[0])

    return TestCurve(evaluate_fn, every, int(cfg.trainer.epochs), run_dir, logger)


test_curve.__test__ = False  # type: ignore[attr-defined]
