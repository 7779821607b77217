"""One job per run dir at a time: ``<run dir>/.lock`` names its owner (host, pid, SLURM job, start time).

Two identical sweeps submitted into one sweep dir would otherwise both train every cell. A job that
finds the lock of a live owner skips the cell (``bench.job.run``); the owner writes the record. A lock
is stale, and taken over, when its owner is this host's process that no longer exists, when it is
this very SLURM job (requeued after preemption, on any host), or when another host's lock is older
than ``lock_stale_h`` hours (we cannot see that host's processes). The lock is created with
``O_EXCL``, and a stale one is renamed away before it is replaced, so of two jobs that race for a cell
exactly one wins.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

LOCK = ".lock"


def _me() -> dict:
    me = {"host": platform.node(), "pid": os.getpid(), "started": time.time(),
          "started_iso": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        me["slurm_job"] = f"{job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return me


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def read_owner(run_dir: Path) -> dict | None:
    """The owner written in ``run_dir``'s lock; None without a lock, {} when it cannot be read."""
    return read_owner_file(Path(run_dir) / LOCK)


def read_owner_file(path: Path) -> dict | None:
    try:
        owner = json.loads(Path(path).read_text())
        return owner if isinstance(owner, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # being written, or garbage


def is_stale(owner: dict, lock_path: Path, stale_after_s: float) -> bool:
    me = _me()
    try:
        age = time.time() - lock_path.stat().st_mtime
    except FileNotFoundError:
        return True
    if not owner:  # unreadable: a writer that died between create and write, or one writing right now
        return age > 10
    if owner.get("slurm_job") and owner.get("slurm_job") == me.get("slurm_job"):
        return True  # this SLURM job, requeued: its earlier incarnation is gone
    if owner.get("host") == me["host"]:
        pid = owner.get("pid")
        return not isinstance(pid, int) or pid == me["pid"] or not _alive(pid)
    return age > stale_after_s


def describe(owner: dict | None) -> str:
    if not owner:
        return "another job"
    return f"pid {owner.get('pid')} on {owner.get('host')} since {owner.get('started_iso', '?')}"


class RunLock:
    """``acquire()`` returns True when this process owns the run dir, False while a live job does."""

    def __init__(self, run_dir: str | Path, stale_after_s: float):
        self.path = Path(run_dir) / LOCK
        self.stale_after_s = float(stale_after_s)
        self.held = False
        self.owner: dict | None = None

    def acquire(self) -> bool:
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = read_owner(self.path.parent)
                if owner is None:
                    continue  # released meanwhile
                if not is_stale(owner, self.path, self.stale_after_s):
                    self.owner = owner
                    return False
                # rename the stale lock away (atomic: of two takers only one succeeds), then retry
                aside = self.path.with_name(f"{LOCK}.stale.{os.getpid()}")
                try:
                    os.replace(self.path, aside)
                except FileNotFoundError:
                    continue
                if read_owner_file(aside) != owner:  # another taker replaced it meanwhile: put theirs back
                    try:
                        os.link(aside, self.path)
                    except FileExistsError:
                        pass
                aside.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(_me(), f)
            self.held = True
            return True
        self.owner = read_owner(self.path.parent)
        return False

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()
