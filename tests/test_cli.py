"""``python -m bench`` niceties: -m anywhere, messages kept in Hydra's per-job log."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench.__main__ import multirun_first
from tests.conftest import ROOT


def test_multirun_flag_moves_first():
    assert multirun_first(["b", "+experiment=ablation", "-m", "profile=smoke"]) == \
        ["b", "-m", "+experiment=ablation", "profile=smoke"]
    assert multirun_first(["b", "x=1", "--multirun"]) == ["b", "--multirun", "x=1"]
    assert multirun_first(["b", "x=1"]) == ["b", "x=1"]
    assert multirun_first(["b", "hydra.job.name=-m-x"]) == ["b", "hydra.job.name=-m-x"]  # only the bare flag


@pytest.mark.slow
def test_multirun_after_overrides_sweeps_and_the_skip_lands_in_the_job_log(tmp_path):
    env = {**os.environ, "UNIAD_BENCH_DATA": str(tmp_path / "data"), "UNIAD_BENCH_CACHE": str(tmp_path / "cache")}
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "bench", "task=complexity", "profile=smoke", "-m", "seed=1,2",
           f"hydra.sweep.dir={sweep}"]
    for _ in range(2):  # the second time every cell is already completed
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "2/2 cells completed" in proc.stdout
    logs = sorted(sweep.rglob("job.log"))
    assert len(logs) == 2
    assert all("skip:" in log.read_text() and "already completed" in log.read_text() for log in logs)


@pytest.mark.slow  # a subprocess end to end: make test, not the fast tier
def test_the_eval_memory_tool_runs():
    """``make eval-memory`` (bench/tools/eval_memory.py), at a tiny size."""
    args = ["--classes", "2", "--images", "6", "--size", "32"]
    proc = subprocess.run([sys.executable, "-m", "bench.tools.eval_memory", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "2 classes x 6 images at 32 px" in proc.stdout and "peak RSS" in proc.stdout
