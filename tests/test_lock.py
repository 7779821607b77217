"""One job per run dir: a live owner's cell is skipped, stale locks are taken over."""

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
    """The pid of a process that stays alive for the test, read once it runs its own program (between fork
    and exec a child's /proc cmdline is still its parent's, so its identity would change under the test)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; print(flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE)
    proc.stdout.readline()
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


def _identity(pid):
    from bench.lock import process_identity

    identity = process_identity(pid)
    if identity is None:
        pytest.skip("no /proc on this system: only the pid of a lock's owner can be checked")
    return identity


def test_a_lock_records_its_process_identity(tmp_path):
    lock = RunLock(tmp_path, stale_after_s=3600)
    assert lock.acquire()
    owner = json.loads((tmp_path / LOCK).read_text())
    me = _identity(os.getpid())
    assert owner["pid_start"] == me["pid_start"] and owner["cmdline"] == me["cmdline"]
    lock.release()


def test_a_reused_pid_does_not_block_the_cell(tmp_paths, live_pid, monkeypatch):
    """The lock's pid now belongs to another live process (kill -9, OOM kill, container restart)."""
    identity = _identity(live_pid)
    reused = {
        "other start": {"pid": live_pid, "pid_start": identity["pid_start"] + 1, "cmdline": identity["cmdline"]},
        "other command": {"pid": live_pid, "pid_start": identity["pid_start"], "cmdline": ["python", "-m", "bench"]},
        "other boot": {**identity, "pid": live_pid, "boot_id": "another-boot"},
    }
    for name, owner in reused.items():
        write_lock(tmp_paths / name, **owner)
        assert RunLock(tmp_paths / name, stale_after_s=3600).acquire(), name
    write_lock(tmp_paths / "real owner", pid=live_pid, **identity)
    assert not RunLock(tmp_paths / "real owner", stale_after_s=3600).acquire()
    # a lock written before identities were recorded: its owner cannot have started after it
    write_lock(tmp_paths / "old lock", pid=live_pid)
    hour_ago = time.time() - 3600
    os.utime(tmp_paths / "old lock" / LOCK, (hour_ago, hour_ago))
    assert RunLock(tmp_paths / "old lock", stale_after_s=48 * 3600).acquire()
    write_lock(tmp_paths / "old lock, live owner", pid=live_pid)  # the owner started before it: kept
    assert not RunLock(tmp_paths / "old lock, live owner", stale_after_s=48 * 3600).acquire()


def test_a_rerun_trains_a_cell_whose_lock_pid_was_reused(tmp_paths, live_pid, monkeypatch):
    trained = []
    monkeypatch.setattr(bench.job, "_run", lambda cfg, run_dir, *rest: trained.append(run_dir) or {})
    write_lock(tmp_paths / "cell", pid=live_pid, pid_start=_identity(live_pid)["pid_start"] - 5)
    run(compose_cfg(["profile=smoke", "rerun=true"]), tmp_paths / "cell")
    assert trained == [tmp_paths / "cell"]


def test_a_skipped_unrecorded_cell_is_not_counted_completed(tmp_path, live_pid, capsys):
    from omegaconf import OmegaConf

    from bench.callbacks import SweepFailures

    sweep = tmp_path / "sweep"
    for name in ("a", "b"):
        (sweep / name / ".hydra").mkdir(parents=True)
    (sweep / "a" / "metrics.json").write_text(json.dumps({"status": "completed"}))
    write_lock(sweep / "b", pid=live_pid, **_identity(live_pid))  # a live job runs b; no record yet
    SweepFailures().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}, "lock_stale_h": 48}))
    out = capsys.readouterr().out
    assert "1/2 cells completed" in out and "1 still running in another job" in out


@pytest.mark.parametrize("host", ["this", "elsewhere"])
def test_a_lock_naming_no_process_is_stale(tmp_path, host):
    """pid 0 and negative pids signal process groups (kill(0) always succeeds): never a live owner."""
    here = platform.node() if host == "this" else "elsewhere"
    locks = {"zero": {"host": here, "pid": 0}, "negative": {"host": here, "pid": -1},
             "text pid": {"host": here, "pid": "1234"}, "no pid": {"host": here}}
    for name, owner in locks.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / LOCK).write_text(json.dumps({**owner, "started": time.time()}))
    for name, text in {"not json": "garbage", "a list": "[1, 2]", "a number": "7"}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / LOCK).write_text(text)
    got = {name: RunLock(tmp_path / name, stale_after_s=3600).acquire() for name in [*locks, "not json", "a list",
                                                                                      "a number"]}
    assert all(got.values()), got
    # a lock being written (empty, or the start of its JSON object) is not taken over at once
    for name, text in {"empty": "", "half": '{"host": "x", "pi'}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / LOCK).write_text(text)
        assert not RunLock(tmp_path / name, stale_after_s=3600).acquire(), name
