"""The start of a sweep: refuse a sweep dir of another profile, say what will run, record the job count.

Called by the sweepers (``hydra_plugins/uniad_bench_sweeper``) once the job list is known, before any
job runs. ``<sweep dir>/sweep.json`` holds the job count and the profile, so each job prints ``job k/N``.
The time estimate comes from completed records of the same profile (their ``timing``) under
``multirun/`` and the sweep dir; none yet, and it says so.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from bench.errors import BenchError
from bench.threads import jobs_at_once
from record.files import RECORD

SWEEP_FILE = "sweep.json"
RECORDS_ROOT = Path("multirun")  # the default sweeps' parent (conf/config.yaml hydra.sweep.dir)


def _records(root: Path):
    """Readable records under ``root``, hidden folders (``.previous``) left out."""
    if not root.is_dir():
        return
    for path in root.rglob(RECORD):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            yield path, record


def _profile(record: dict) -> str | None:
    config = record.get("config") if isinstance(record.get("config"), dict) else {}
    return config.get("profile_name")


def foreign_profiles(sweep_dir: Path, profile: str) -> dict[str, Path]:
    """``{other profile: one record of it}`` among the records in ``sweep_dir``."""
    found: dict[str, Path] = {}
    for path, record in _records(sweep_dir):
        other = _profile(record)
        if other and other != profile:
            found.setdefault(other, path)
    return found


def job_seconds(record: dict, epochs: int) -> float | None:
    """A completed record's time for one job of ``epochs`` epochs: its fixed part (data check, features,
    evaluation) plus its seconds per epoch times ``epochs``."""
    timing = record.get("timing") if isinstance(record.get("timing"), dict) else {}
    total = timing.get("total_s")
    if record.get("status") != "completed" or not isinstance(total, int | float):
        return None
    fit_s, run = timing.get("fit_s"), timing.get("epochs_run")
    if isinstance(fit_s, int | float) and isinstance(run, int) and run > 0:
        return max(0.0, total - fit_s) + fit_s / run * epochs
    return float(total)


def estimate(roots: list[Path], profile: str, epochs: int) -> tuple[float, int] | None:
    """(median seconds a job, records it comes from) of completed records of ``profile``, or None."""
    seen, times = set(), []
    for root in roots:
        for path, record in _records(root):
            key = path.resolve()
            if key in seen or _profile(record) != profile:
                continue
            seen.add(key)
            t = job_seconds(record, epochs)
            if t is not None:
                times.append(t)
    return (statistics.median(times), len(times)) if times else None


def _duration(seconds: float) -> str:
    if seconds < 10:  # a smoke job: "0 s a job" would say nothing
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def launcher_jobs_at_once(launcher: DictConfig | None, n_jobs: int) -> int:
    """Jobs the configured launcher runs side by side: local (submitit) its ``max_parallel``, SLURM its
    ``array_parallelism``, Hydra's basic launcher one."""
    target = str(OmegaConf.select(launcher, "_target_", default="")) if launcher is not None else ""
    if target.endswith("LocalLauncher"):
        return jobs_at_once(launcher.get("max_parallel"), launcher.get("cpus_per_task"), n_jobs)
    if target.endswith("SlurmLauncher"):
        return max(1, min(int(launcher.get("array_parallelism") or n_jobs), n_jobs))
    return 1


def job_profile(config: DictConfig, jobs: list[list[str]]) -> str | None:
    """The profile every job runs (a ``profile=`` override of the jobs, else the config's), None if mixed."""
    chosen = {next((o.split("=", 1)[1] for o in job if o.lstrip("+").startswith("profile=")), None) for job in jobs}
    names = {str(config.get("profile_name")) if c is None else c for c in chosen}
    return names.pop() if len(names) == 1 else None


def start(config: DictConfig, jobs: list[list[str]]) -> str:
    """Check the sweep dir, write ``sweep.json``, and return the lines that say what will run."""
    sweep_dir = Path(str(config.hydra.sweep.dir))
    profile = job_profile(config, jobs)
    if profile is not None:
        other = foreign_profiles(sweep_dir, profile)
        if other:
            names = ", ".join(sorted(other))
            raise BenchError(
                f"sweep dir {sweep_dir} holds records of profile {names} (e.g. {next(iter(other.values()))}); "
                f"this sweep is profile {profile}: leave hydra.sweep.dir out (each profile gets its own "
                "multirun/<experiment>-<profile>) or give another one")
    epochs = int(OmegaConf.select(config, "trainer.epochs", default=0) or 0)
    at_once = launcher_jobs_at_once(OmegaConf.select(config, "hydra.launcher"), len(jobs))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / SWEEP_FILE).write_text(json.dumps({"jobs": len(jobs), "profile": profile}) + "\n")
    what = f"profile {profile} ({epochs} epoch{'s' if epochs != 1 else ''})" if profile else "mixed profiles"
    lines = [f"sweep {sweep_dir}: {len(jobs)} job{'s' if len(jobs) != 1 else ''}, {what}, {at_once} at a time"]
    est = estimate([RECORDS_ROOT, sweep_dir], profile, epochs) if profile else None
    if est is None:
        lines.append(f"estimate: no estimate yet (no completed {profile or ''} record under {RECORDS_ROOT}/ or the "
                     "sweep dir)".replace("  ", " "))
    else:
        per_job, n = est
        total = per_job * len(jobs) / at_once
        lines.append(f"estimate: ~{_duration(total)} ({_duration(per_job)} a job, the median of {n} completed "
                     f"{profile} record{'s' if n != 1 else ''}; cells already done are skipped in seconds)")
    return "\n".join(lines)


def job_count(sweep_dir: Path) -> int | None:
    """The sweep's job count from ``sweep.json`` (None when absent)."""
    try:
        jobs = json.loads((Path(sweep_dir) / SWEEP_FILE).read_text()).get("jobs")
    except (OSError, ValueError, AttributeError):
        return None
    return jobs if isinstance(jobs, int) else None
