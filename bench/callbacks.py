"""Hydra callback: at the end of a sweep, list failed or missing cells and exit non-zero."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from bench.record import RECORD, read_record


def sweep_failures(sweep_dir: Path, job_dirs: list[Path]) -> list[str]:
    """One line per job dir whose record is failed or missing."""
    lines = []
    for job_dir in job_dirs:
        record = read_record(job_dir)
        rel = job_dir.relative_to(sweep_dir) if job_dir.is_relative_to(sweep_dir) else job_dir
        if record is None:
            lines.append(f"{rel}: no {RECORD} (the job died or was cancelled)")
        elif record.get("status") != "completed":
            lines.append(f"{rel}: {record.get('error', record.get('status'))}")
    return lines


class SweepFailures(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        job_dirs = sorted({p.parent for p in sweep_dir.rglob(".hydra")})
        failed = sweep_failures(sweep_dir, job_dirs)
        print(f"sweep {sweep_dir}: {len(job_dirs) - len(failed)}/{len(job_dirs)} cells completed")
        if failed:
            print("failed cells:\n  " + "\n  ".join(failed), file=sys.stderr)
            sys.exit(1)
