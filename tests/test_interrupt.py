"""Ctrl-C: the last finished epoch is saved (not the half-trained state of the current one), one line says where
the job stopped, and the same command resumes it to the numbers of an uninterrupted run."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

import bench.fit
from bench import checkpoint, interrupt
from bench.job import run
from tests.conftest import ROOT, compose_cfg

TINY = ["profile=smoke", "data.generator.n_train=4", "trainer.epochs=3", "trainer.ckpt_every=100"]


@pytest.mark.slow
def test_an_interrupt_mid_epoch_saves_the_last_finished_epoch_and_resuming_matches(tmp_paths, monkeypatch):
    reference = run(compose_cfg(TINY), tmp_paths / "reference")
    make_train_step, calls = bench.fit.make_train_step, []

    def interrupted_in_epoch_1(*args, **kwargs):  # 40 images at batch 8: 5 steps an epoch; stop at step 8
        step = make_train_step(*args, **kwargs)

        def counted(kind, x):
            calls.append(kind)
            if len(calls) == 8:
                raise KeyboardInterrupt
            return step(kind, x)
        return counted

    monkeypatch.setattr(bench.fit, "make_train_step", interrupted_in_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        run(compose_cfg(TINY), tmp_paths / "cut")
    now = interrupt.save_pending()
    assert (now.done, now.saved, now.epochs) == (0, 0, 3)
    assert checkpoint.load(tmp_paths / "cut" / checkpoint.CKPT)["epoch"] == 0
    line = interrupt.stopped_line(now, tmp_paths / "cut", "python -m bench X")
    assert line.startswith("interrupted: stopped in epoch 2/3 in ") and "last.ckpt holds epoch 1/3" in line

    monkeypatch.setattr(bench.fit, "make_train_step", make_train_step)
    resumed = run(compose_cfg(TINY), tmp_paths / "cut")
    assert resumed["timing"]["epochs_run"] == 2
    assert resumed["metrics"]["mean"] == reference["metrics"]["mean"]


@pytest.mark.slow
def test_ctrl_c_prints_one_line_without_a_traceback_and_the_same_command_resumes(tmp_path):
    env = {**os.environ, "UNIAD_BENCH_DATA": str(tmp_path / "datasets"), "UNIAD_BENCH_CACHE": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "bench", "profile=smoke", "data.generator.n_train=4", "trainer.epochs=40",
           "trainer.ckpt_every=1000", f"hydra.run.dir={tmp_path / 'run'}"]
    # Ctrl-C as a terminal delivers it, even where this test runs in the background (`make test &`: a shell
    # starts background jobs with SIGINT ignored, which Python then never turns into KeyboardInterrupt)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    err, deadline = b"", time.monotonic() + 120
    while b" 3/40 " not in err and b" 4/40 " not in err and time.monotonic() < deadline:  # a few epochs done
        if select.select([proc.stderr], [], [], 1)[0]:
            err += os.read(proc.stderr.fileno(), 65536)
    proc.send_signal(signal.SIGINT)
    out, rest = proc.communicate(timeout=60)
    err = (err + rest).decode()
    assert proc.returncode == 130, err[-2000:]
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and "Traceback" not in err and "KeyboardInterrupt" not in err
    assert "last.ckpt holds epoch" in lines[0]
    assert "the same command resumes it: python -m bench profile=smoke" in lines[0]
    saved = checkpoint.load(tmp_path / "run" / checkpoint.CKPT)["epoch"]
    assert saved >= 1
    again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "completed" and record["timing"]["epochs_run"] == 40 - saved - 1
