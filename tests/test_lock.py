"""One job per run dir (issue 14 point 10): a live owner's cell is skipped, stale locks are taken over."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time

import pytest

import bench.job
from bench.callbacks import sweep_failures
from bench.job import run
from bench.lock import LOCK, RunLock
from tests.conftest import ROOT, compose_cfg


@pytest.fixture
def live_pid():
    """The pid of a process that stays alive for the test."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def write_lock(run_dir, **owner):
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / LOCK).write_text(json.dumps({"host": platform.node(), "pid": 1, "started": time.time(), **owner}))


def test_a_cell_run_by_a_live_job_is_skipped_without_training(tmp_paths, live_pid, monkeypatch):
    monkeypatch.setattr(bench.job, "_run", lambda *a: pytest.fail("the second job trained the cell"))
    run_dir = tmp_paths / "cell"
    write_lock(run_dir, pid=live_pid)
    result = run(compose_cfg(["profile=smoke"]), run_dir)
    assert result["status"] == "skipped" and result["locked_by"]["pid"] == live_pid
    assert not (run_dir / "metrics.json").exists()  # the owner writes the record, not us
    assert (run_dir / LOCK).is_file()  # and keeps its lock
    assert sweep_failures(tmp_paths, [run_dir]) == []  # a cell running elsewhere is not a failed one


def test_stale_locks_are_taken_over(tmp_path, live_pid, monkeypatch):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_lock(tmp_path / "a", pid=dead.pid)  # this host, process gone
    write_lock(tmp_path / "b", host="elsewhere", pid=live_pid)
    os.utime(tmp_path / "b" / LOCK, (time.time() - 7200, time.time() - 7200))  # another host, 2 h old
    write_lock(tmp_path / "c", host="elsewhere", pid=live_pid)  # another host, fresh: we cannot tell
    write_lock(tmp_path / "d", host="elsewhere", pid=live_pid, slurm_job="77_3")  # this very SLURM job, requeued
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    got = {name: RunLock(tmp_path / name, stale_after_s=3600).acquire() for name in "abcd"}
    assert got == {"a": True, "b": True, "c": False, "d": True}
    assert json.loads((tmp_path / "a" / LOCK).read_text())["pid"] == os.getpid()


RACER = """
import sys, time
from bench.lock import RunLock
lock = RunLock(sys.argv[1], stale_after_s=3600)
while time.time() < float(sys.argv[2]):
    pass
won = lock.acquire()
print(int(won), flush=True)
time.sleep(1.5)
lock.release()
"""


def test_of_jobs_started_together_exactly_one_owns_the_cell(tmp_path):
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path), str(start)], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for _ in range(6)]
    wins = [int(p.communicate(timeout=60)[0].strip()) for p in procs]
    assert sum(wins) == 1
    assert not (tmp_path / LOCK).exists()  # released by the owner
