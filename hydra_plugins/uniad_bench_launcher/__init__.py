"""hydra-submitit-launcher, tolerant of jobs that die: ``conf/hydra/launcher/{slurm,local}.yaml``.

(Hydra loads launchers only from the ``hydra_plugins`` namespace package, hence this folder. No
``from __future__ import annotations``: Hydra imports plugins outside sys.modules, which breaks
dataclasses with string annotations.)

The upstream ``launch()`` returns ``[j.results()[0] for j in jobs]``, so the first job that died
without a result (``scancel``, out of memory, killed at the time limit after its last requeue)
raises out of the sweep: the results of the other jobs are dropped and the end-of-sweep callback
(``bench.callbacks.SweepFailures``) never runs. Here every job is waited for; a job without a result
is logged and gets an empty return, and SweepFailures then lists its cell (the record, not Hydra's
job status, says whether a cell completed) and exits 1. A cell that died before Hydra made its run
dir gets ``<run dir>/.hydra/overrides.yaml`` written here, so SweepFailures sees it as missing.

The local launcher runs at most ``hydra.launcher.max_parallel`` jobs at once (null: as many as the usable
cores allow at ``cpus_per_task`` each, ``bench.threads.jobs_at_once``; upstream starts every job at once)
and tells them that number (``bench.threads.JOBS_AT_ONCE``), so each takes its share of the cores.

On SLURM, a job that left the queue without a result and that sacct does not know (a pending task of
a throttled array cancelled before it ran has no accounting record; nothing has one without slurmdbd)
would make submitit wait forever; it counts as died once squeue has not listed it for 30 s.
"""

import logging
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_submitit_launcher import submitit_launcher as upstream
from hydra_plugins.hydra_submitit_launcher.config import LocalQueueConf
from omegaconf import OmegaConf

from bench.threads import JOBS_AT_ONCE, jobs_at_once

log = logging.getLogger(__name__)


class _Job:
    """A submitted job whose ``results()`` gives a JobReturn even when the job died."""

    def __init__(self, job: Any, launcher: "_Tolerant", overrides: list[str]) -> None:
        self.job, self.launcher, self.overrides = job, launcher, overrides

    def results(self) -> list[JobReturn]:
        try:
            if self.launcher._EXECUTOR == "slurm":
                self._wait_slurm()
            return self.job.results()
        except Exception as exc:  # UncompletedJobError, FailedJobError: the job left no result
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            try:
                state = self.job.state
            except Exception:
                state = "?"
            log.error(f"job {self.job.job_id} ({' '.join(self.overrides)}) ended without a result "
                      f"(state {state}): {type(exc).__name__}: {first}")
            self.launcher.mark_missing(self.overrides)
            # COMPLETED only means "no exception to re-raise": Hydra's sweeper re-raises a FAILED
            # return before the end-of-sweep callbacks, which report the cell from its record.
            ret = JobReturn(overrides=self.overrides, status=JobStatus.COMPLETED)
            ret.return_value = None
            return [ret]

    def _wait_slurm(self, grace_s: float = 30.0) -> None:
        from submitit.core.utils import UncompletedJobError

        gone_since = None
        while not self.job.done():
            if self.job.state == "UNKNOWN" and not self._in_queue():
                gone_since = gone_since or time.monotonic()
                if time.monotonic() - gone_since > grace_s:
                    raise UncompletedJobError(f"job {self.job.job_id} left the SLURM queue without a result "
                                              "(and without an accounting record)")
            else:
                gone_since = None
            time.sleep(2)

    def _in_queue(self) -> bool:
        """False only when squeue answers and does not list the job (pending, running, completing)."""
        try:
            q = subprocess.run(["squeue", "-h", "-r", "-j", str(self.job.job_id), "-o", "%i"],
                               capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.SubprocessError):
            return True
        return not ((q.returncode == 0 and not q.stdout.strip()) or "Invalid job id" in q.stderr)


class _Tolerant(upstream.BaseSubmititLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        import submitit

        overrides = [list(o) for o in job_overrides]
        map_array = submitit.AutoExecutor.map_array

        def tolerant_map_array(executor, fn, *iterable):
            args = list(zip(*iterable, strict=True))
            jobs = self.submit(executor, fn, args) if self.rolling() else map_array(executor, fn, *iterable)
            return [_Job(job, self, o) for job, o in zip(jobs, overrides, strict=True)]

        # upstream launch() builds the executor and submits; only the waiting changes
        submitit.AutoExecutor.map_array = tolerant_map_array
        try:
            return super().launch(job_overrides, initial_job_idx)
        finally:
            submitit.AutoExecutor.map_array = map_array

    def rolling(self) -> bool:
        return False

    def submit(self, executor, fn, args: list[tuple]) -> list:
        raise NotImplementedError

    def mark_missing(self, overrides: list[str]) -> None:
        try:
            assert self.hydra_context is not None and self.config is not None
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            hydra_dir = Path(str(cfg.hydra.sweep.dir)) / str(OmegaConf.select(cfg, "hydra.sweep.subdir")) / ".hydra"
            if not hydra_dir.exists():
                hydra_dir.mkdir(parents=True)
                OmegaConf.save(OmegaConf.create(list(overrides)), hydra_dir / "overrides.yaml")
        except Exception as exc:  # reporting must not hide the other results
            log.warning(f"could not mark the run dir of {' '.join(overrides)}: {exc}")


class SlurmLauncher(_Tolerant, upstream.SlurmLauncher):
    pass


class LocalLauncher(_Tolerant, upstream.LocalLauncher):
    def __init__(self, max_parallel: int | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.max_parallel = max_parallel
        self.at_once = 1

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        self.at_once = jobs_at_once(self.max_parallel, self.params.get("cpus_per_task"), len(job_overrides))
        os.environ[JOBS_AT_ONCE] = str(self.at_once)  # the jobs' environment: their share of the cores
        return super().launch(job_overrides, initial_job_idx)

    def rolling(self) -> bool:
        return True

    def submit(self, executor, fn, args: list[tuple]) -> list:
        """Start the jobs in order, at most ``at_once`` running at a time; returns once the last has started."""
        jobs: list = []
        for job_args in args:
            while sum(not j.done() for j in jobs) >= self.at_once:
                time.sleep(0.5)
            jobs.append(executor.submit(fn, *job_args))
        return jobs


@dataclass
class LocalConf(LocalQueueConf):
    _target_: str = "hydra_plugins.uniad_bench_launcher.LocalLauncher"
    max_parallel: Any = None  # int or null; jobs at once; null = as many as the cores allow at cpus_per_task each


ConfigStore.instance().store(group="hydra/launcher", name="bench_local", node=LocalConf, provider="uniad_bench")
