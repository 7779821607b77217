"""Everything a job does to its run dir around its run: the lock, the skip of a completed record, the
``rerun=true`` move aside, the temp files a killed job left.

A job whose run dir already holds a completed record of the same config is skipped (the record is
returned again, marked ``skipped``); ``rerun=true`` moves the old record, checkpoint and example maps
to ``<run dir>/.previous/<time>/`` (hidden: reports never collect it) and starts over. A run dir is
locked while its job runs (``bench.lock``): a second job for the same cell skips it.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

from bench.errors import BenchError, RunDirRefused, one_line
from bench.lock import RunLock, describe
from bench.resolve import Job, Unresolved, pick_device
from record.atomic import remove_stale_temps
from record.files import ATOMIC, PREVIOUS_OWNED, RECORD
from record.keys import config_diff, shown_keys, with_device
from record.parts import locked, skipped
from record.store import read_run_record

log = logging.getLogger(__name__)


def skip_completed(run_dir: Path, job: Job | Unresolved, rerun: bool) -> dict | None:
    """The completed record of ``run_dir`` when this job would recompute it (``rerun=false``), else None.

    The record must be this job's: its config equals the job's outside the keys neutral for a skip
    (``record.keys.NEUTRAL``; the device compared as the type each ran on), else the job stops with the
    differing keys and the record is left as it is (a skip never hands one run's numbers to another
    config, e.g. ``model=mlp`` in a UniAD run's dir, or a sweep over another ``paths.data_root``).
    A job whose config cannot be resolved, or whose eval checkpoint cannot be read, stops too.
    """
    if rerun:
        return None
    previous = read_run_record(run_dir)
    if previous is None or previous.status != "completed":
        return None
    path = run_dir / RECORD
    config, device = _comparable(path, job)
    saved = previous.raw.get("config")
    diff = ["config"] if not isinstance(saved, dict) else config_diff(
        with_device(saved, previous.device_type), with_device(config, device), "skip")
    if diff:
        raise _unrecorded(RunDirRefused(
            f"{path} is a completed record of another config ({shown_keys(diff)}): pass rerun=true to replace it "
            "(the old files move to .previous/), or use a new run dir"))
    log.info(f"skip: {path} is already completed (rerun=true recomputes it)")
    return skipped(previous.raw)


def _comparable(path: Path, job: Job | Unresolved) -> tuple[dict, str | None]:
    """The job's resolved config (task=eval: with its checkpoint's model) and device type, to compare with
    a completed record; a job whose config is not known that far stops."""
    if isinstance(job, Job):
        return job.config, job.device.type
    eval_task = job.config.get("task") == "eval" if isinstance(job.config, dict) else False
    if job.stage == "config" or (eval_task and not isinstance(job.cause, BenchError)):
        raise _unrecorded(BenchError(f"{path} is completed, and this job's config cannot be resolved to compare "
                                     f"with it ({one_line(job.cause)})"))
    if eval_task:
        raise _unrecorded(BenchError(f"{path} is completed, and this job cannot be compared with it: {job.cause}"))
    if job.device is not None:
        return job.config, job.device.type
    try:  # the values failed their checks: compared as they are (a skip needs no check)
        return job.config, pick_device((job.config.get("trainer") or {}).get("device")).type
    except (RuntimeError, TypeError):
        return job.config, None


def _unrecorded(exc: BenchError) -> BenchError:
    exc.record_path = None  # type: ignore[attr-defined]  # nothing written: the completed record stays
    return exc


def move_aside(run_dir: Path) -> Path | None:
    """rerun=true: move the record, the checkpoint and the example maps to ``.previous/<time>/``."""
    names = [n for n in PREVIOUS_OWNED if (run_dir / n).exists()]
    if not names:
        return None
    dest = run_dir / ".previous" / time.strftime("%Y%m%d-%H%M%S")
    while dest.exists():
        dest = dest.with_name(dest.name + "+")
    dest.mkdir(parents=True)
    for name in names:
        shutil.move(str(run_dir / name), str(dest / name))
    log.info(f"rerun=true: moved {', '.join(names)} to {dest}; starting over")
    return dest


class RunDir:
    """``with RunDir(run_dir, job, rerun, stale_after_s) as claim``: ``claim.done`` is the record to return
    without running (a completed record, or the lock of another live job), else None and the run dir is
    this job's (locked, the old files moved aside under rerun, stale temp files removed) until the block
    ends."""

    def __init__(self, run_dir: Path, job: Job | Unresolved, rerun: bool, stale_after_s: float):
        self.path, self.job, self.rerun = Path(run_dir), job, bool(rerun)
        self.lock = RunLock(self.path, stale_after_s)
        self.done: dict | None = None

    def __enter__(self) -> RunDir:
        self.path.mkdir(parents=True, exist_ok=True)
        self.done = skip_completed(self.path, self.job, self.rerun)
        if self.done is not None:
            return self
        if not self.lock.acquire():
            log.warning(f"skip: {self.path} is being run by {describe(self.lock.owner)}; that job writes its record")
            self.done = locked(self.lock.owner, str(self.path))
            return self
        try:
            self.done = skip_completed(self.path, self.job, self.rerun)  # the job before us may have completed it
            if self.done is None:
                if self.rerun:
                    move_aside(self.path)
                remove_stale_temps(self.path, list(ATOMIC))  # left by a killed job; the lock is ours
        except BaseException:
            self.lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.lock.release()
