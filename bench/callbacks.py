"""Hydra callback: at the end of a sweep, say where it stands and exit non-zero unless every cell is done.

Each cell is classified from its outcome (``bench.outcome``, written by the job) and its record:
completed (ran now), skipped (its completed record is this config's), refused (its run dir holds a
completed record of another config, left as it is), failed, missing (the job died before writing
anything) or still running in another job (a double submission: that job's sweep reports it; it does
not fail this one). A refused cell is never counted completed: its record is another config's. The
footer is a compact table, the first error line of every cell not completed, and the next command.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bench import outcome
from bench.lock import LOCK, describe, is_stale, read_owner
from record.files import RECORD
from record.parse import Record
from record.store import read_record_file, record_path

log = logging.getLogger(__name__)

KINDS = ("completed", "skipped", "refused", "failed", "missing", "running_elsewhere")
MEANING = {"completed": "ran to the end", "skipped": "already completed with this config, not run again",
           "refused": "a completed record of another config is there (rerun=true replaces it)",
           "failed": "", "missing": "the job died or was cancelled before writing its record"}


def running_elsewhere(job_dir: Path, stale_after_s: float = 48 * 3600) -> dict | None:
    """The owner of ``job_dir``'s lock when another live job is running it (a double submission), else None."""
    owner = read_owner(job_dir)
    if owner is None or is_stale(owner, job_dir / LOCK, stale_after_s):
        return None
    return owner


def classify(job_dir: Path, stale_after_s: float = 48 * 3600) -> tuple[str, str | None]:
    """``(kind, detail)`` of one cell, ``kind`` one of ``KINDS``; ``detail``: the first error line, or the
    lock owner of a cell running elsewhere."""
    record, unreadable = _read(job_dir)
    status = record.status if record is not None else None
    error = record.error if record is not None else None
    said = outcome.read(job_dir)
    if said is not None:
        kind = said["outcome"]
        if kind in ("completed", "skipped") and status == "completed":
            return kind, None
        if kind == "refused":
            return kind, said.get("error")
        if kind == "failed":
            return kind, said.get("error") or error
    # no outcome (a job that died, or an older bench): the record and the lock say it
    if status == "completed":
        return "completed", None
    owner = running_elsewhere(job_dir, stale_after_s)
    if owner is not None:
        return "running_elsewhere", describe(owner)
    if unreadable is not None:
        return "failed", f"{RECORD} is unreadable ({unreadable})"
    if record is None:
        return "missing", f"no {RECORD}"
    return "failed", str(error or status)


def _read(job_dir: Path) -> tuple[Record | None, str | None]:
    """``(record, None)``, ``(None, None)`` without a record, ``(None, reason)`` for an unreadable one."""
    path = record_path(job_dir)
    if not path.is_file():
        return None, None
    try:
        return read_record_file(path), None
    except ValueError as exc:
        return None, str(exc)


def _rel(sweep_dir: Path, job_dir: Path) -> Path:
    return job_dir.relative_to(sweep_dir) if job_dir.is_relative_to(sweep_dir) else job_dir


def sweep_failures(sweep_dir: Path, job_dirs: list[Path], stale_after_s: float = 48 * 3600) -> list[str]:
    """``<cell>: <first error line>`` for every cell neither completed, skipped nor running elsewhere (a
    refused cell's line starts ``refused:``)."""
    lines = []
    for job_dir in job_dirs:
        kind, detail = classify(job_dir, stale_after_s)
        if kind == "running_elsewhere":
            log.info(f"{_rel(sweep_dir, job_dir)}: still running in {detail}")
        elif kind not in ("completed", "skipped"):
            what = {"missing": f"no {RECORD} (the job died or was cancelled)", "refused": f"refused: {detail}"}
            lines.append(f"{_rel(sweep_dir, job_dir)}: {what.get(kind, detail)}")
    return lines


def sweep_summary(sweep_dir: Path, job_dirs: list[Path], stale_after_s: float = 48 * 3600
                  ) -> tuple[str, list[str]]:
    """(the footer printed on stdout: ``sweep DIR: k/n cells completed`` and a table of counts, the lines of
    the cells not completed)."""
    counts = dict.fromkeys(KINDS, 0)
    for job_dir in job_dirs:
        counts[classify(job_dir, stale_after_s)[0]] += 1
    done = counts["completed"] + counts["skipped"]
    head = f"sweep {sweep_dir}: {done}/{len(job_dirs)} cells completed"
    if counts["running_elsewhere"]:
        head += f", {counts['running_elsewhere']} still running in another job (its sweep reports them)"
    rows = [f"  {kind:<10}{counts[kind]:>4}   {MEANING[kind]}".rstrip()
            for kind in KINDS[:5] if kind != "missing" or counts[kind]]
    return "\n".join([head, *rows]), sweep_failures(sweep_dir, job_dirs, stale_after_s)


class SweepFailures(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        job_dirs = sorted({p.parent for p in sweep_dir.rglob(".hydra")})
        footer, failed = sweep_summary(sweep_dir, job_dirs, float(config.lock_stale_h) * 3600)
        print(footer)
        if failed:
            print("failed cells:\n  " + "\n  ".join(failed), file=sys.stderr)
        print(f"next: python -m reports {sweep_dir}", flush=True)
        if failed:
            sys.exit(1)
