"""One job per run dir at a time: ``<run dir>/.lock`` names its owner (host, pid, the process's start
and command line, SLURM job, start time).

Two identical sweeps submitted into one sweep dir would otherwise both train every cell. A job that
finds the lock of a live owner skips the cell (``bench.job.run``); the owner writes the record. A lock
is stale, and taken over, when its owner is this host's process that no longer exists, when it is
this very SLURM job (requeued after preemption, on any host), or when another host's lock is older
than ``lock_stale_h`` hours (we cannot see that host's processes). A pid is reused after its process
dies (kill -9, an OOM kill, a container restarted with pids from 1), so on this host the live process
must also be the owner: the same start time (``/proc/<pid>/stat``, in clock ticks since boot, and the
same boot) and command line as the lock records; for a lock that records neither, a process started
after the lock was written is not its owner. A lock that names no process (a pid that is not a positive
integer, or a file that is not a lock's JSON object) is stale on any host: ``kill(0)`` and ``kill(-n)``
signal process groups, so such a pid would otherwise always look alive. The lock is created with
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
    me.update(process_identity(os.getpid()) or {})
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        me["slurm_job"] = f"{job}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return me


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def process_identity(pid: int) -> dict | None:
    """``{"pid_start", "boot_id", "cmdline"}`` of a live process of this host from ``/proc``; None where
    there is no ``/proc`` (then only the pid is known) or the process is gone."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None or ")" not in stat:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # the command name in parentheses may hold spaces
    try:
        start = int(fields[19])  # field 22: start time in clock ticks after boot
    except (IndexError, ValueError):
        return None
    cmdline = (_read(f"/proc/{pid}/cmdline") or "").rstrip("\0").split("\0")
    return {"pid_start": start, "boot_id": (_read("/proc/sys/kernel/random/boot_id") or "").strip(),
            "cmdline": cmdline}


def _start_epoch(pid_start: int) -> float | None:
    """A process's start as seconds since the epoch (to about a second), from its start in ticks."""
    stat = _read("/proc/stat") or ""
    boot = next((line.split()[1] for line in stat.splitlines() if line.startswith("btime ")), None)
    return None if boot is None else int(boot) + pid_start / os.sysconf("SC_CLK_TCK")


def is_owner(owner: dict, lock_written: float) -> bool:
    """Whether the live process with the pid of ``owner`` (a lock of this host) is the one that wrote it."""
    now = process_identity(owner["pid"])
    if now is None:  # no /proc: the pid is all we know
        return _alive(owner["pid"])
    if "pid_start" in owner:
        return (owner.get("pid_start") == now["pid_start"] and owner.get("boot_id", now["boot_id"]) == now["boot_id"]
                and owner.get("cmdline", now["cmdline"]) == now["cmdline"])
    started = _start_epoch(now["pid_start"])  # a lock from before identities were recorded
    return started is None or started <= lock_written + 2.0  # started after the lock: a reused pid


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


GARBAGE = "garbage"  # the key of what ``read_owner_file`` makes of a file that is no lock


def read_owner_file(path: Path) -> dict | None:
    """The owner in a lock file; None without one, {} while it may still be being written (empty, or the
    start of a JSON object), ``{GARBAGE: text}`` for anything else."""
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        owner = json.loads(text)
    except ValueError:
        return {} if not text.strip() or text.lstrip().startswith("{") else {GARBAGE: text[:40]}
    return owner if isinstance(owner, dict) else {GARBAGE: text[:40]}


def _names_a_process(owner: dict) -> bool:
    pid = owner.get("pid")
    return GARBAGE not in owner and isinstance(pid, int) and not isinstance(pid, bool) and pid > 0


def is_stale(owner: dict, lock_path: Path, stale_after_s: float) -> bool:
    me = _me()
    try:
        age = time.time() - lock_path.stat().st_mtime
    except FileNotFoundError:
        return True
    if not owner:  # unreadable: a writer that died between create and write, or one writing right now
        return age > 10
    if not _names_a_process(owner):
        return True
    if owner.get("slurm_job") and owner.get("slurm_job") == me.get("slurm_job"):
        return True  # this SLURM job, requeued: its earlier incarnation is gone
    if owner.get("host") == me["host"]:
        pid = owner.get("pid")
        if pid == me["pid"] or not _alive(pid):
            return True
        return not is_owner(owner, lock_written=time.time() - age)
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
