"""Hydra callback: at the end of a sweep, count the completed cells, list failed or missing ones and exit
non-zero when there are any. Only a completed record counts as completed: a cell skipped because another
live job holds its lock is listed as running there, not counted."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bench.lock import LOCK, describe, is_stale, read_owner
from record.files import RECORD
from record.parse import Record
from record.store import read_record_file, read_run_record, record_path

log = logging.getLogger(__name__)


def running_elsewhere(job_dir: Path, stale_after_s: float = 48 * 3600) -> dict | None:
    """The owner of ``job_dir``'s lock when another live job is running it (a double submission), else None."""
    owner = read_owner(job_dir)
    if owner is None or is_stale(owner, job_dir / LOCK, stale_after_s):
        return None
    return owner


def sweep_failures(sweep_dir: Path, job_dirs: list[Path], stale_after_s: float = 48 * 3600) -> list[str]:
    """One line per job dir whose record is failed or missing (a cell that another live job is running
    is neither: it is logged and that job's own sweep reports it)."""
    lines = []
    for job_dir in job_dirs:
        record, unreadable = _read(job_dir)
        rel = job_dir.relative_to(sweep_dir) if job_dir.is_relative_to(sweep_dir) else job_dir
        owner = running_elsewhere(job_dir, stale_after_s) if record is None or record.status != "completed" \
            else None
        if owner is not None:
            log.info(f"{rel}: still running in {describe(owner)}")
        elif unreadable is not None:
            lines.append(f"{rel}: {RECORD} is unreadable ({unreadable})")
        elif record is None:
            lines.append(f"{rel}: no {RECORD} (the job died or was cancelled)")
        elif record.status != "completed":
            lines.append(f"{rel}: {record.error or record.status}")
    return lines


def _read(job_dir: Path) -> tuple[Record | None, str | None]:
    """``(record, None)``, ``(None, None)`` without a record, ``(None, reason)`` for an unreadable one."""
    path = record_path(job_dir)
    if not path.is_file():
        return None, None
    try:
        return read_record_file(path), None
    except ValueError as exc:
        return None, str(exc)


def sweep_summary(sweep_dir: Path, job_dirs: list[Path], stale_after_s: float = 48 * 3600) -> tuple[str, list[str]]:
    """(``sweep DIR: k/n cells completed[, m still running in another job]``, the failed cells' lines)."""
    failed = sweep_failures(sweep_dir, job_dirs, stale_after_s)
    done = sum(1 for d in job_dirs if getattr(read_run_record(d), "status", None) == "completed")
    line = f"sweep {sweep_dir}: {done}/{len(job_dirs)} cells completed"
    running = max(0, len(job_dirs) - done - len(failed))
    if running:
        line += f", {running} still running in another job (its sweep reports them)"
    return line, failed


class SweepFailures(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        job_dirs = sorted({p.parent for p in sweep_dir.rglob(".hydra")})
        line, failed = sweep_summary(sweep_dir, job_dirs, float(config.lock_stale_h) * 3600)
        print(line)
        if failed:
            print("failed cells:\n  " + "\n  ".join(failed), file=sys.stderr)
            sys.exit(1)
