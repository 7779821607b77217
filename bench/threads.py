"""How many CPU threads torch gets, and how many jobs a local sweep runs at once.

torch's default (the machine's cores) is wrong twice: a container or ``taskset`` may allow this process
fewer cores (``os.sched_getaffinity``), and a local sweep runs several jobs side by side, each of which
would take every core. ``trainer.threads: null`` is therefore the cores this process may use divided
among the jobs its launcher runs at once; the local launcher tells its jobs that number through
``JOBS_AT_ONCE`` in their environment. An ``OMP_NUM_THREADS`` set in the environment is a ceiling (the user's
own limit, as torch itself reads it).
"""

from __future__ import annotations

import os

from bench.errors import BenchError

JOBS_AT_ONCE = "UNIAD_BENCH_JOBS_AT_ONCE"


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity; ``os.cpu_count()`` where that is unknown)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def jobs_at_once(max_parallel, cpus_per_task, n_jobs: int, cores: int | None = None) -> int:
    """Jobs a local launcher runs side by side: ``max_parallel``, else as many as the cores allow at
    ``cpus_per_task`` each; never more than there are jobs, never fewer than one."""
    cores = usable_cores() if cores is None else cores
    limit = int(max_parallel) if max_parallel else cores // max(1, int(cpus_per_task or 1))
    return max(1, min(limit, n_jobs))


def torch_threads(threads, cores: int | None = None, at_once: int | None = None) -> int:
    """``trainer.threads``, else this job's share of the usable cores (``JOBS_AT_ONCE`` jobs share them), at
    most ``OMP_NUM_THREADS`` where that is set."""
    if threads is not None:
        if int(threads) < 1:
            raise BenchError(f"trainer.threads={threads}: give a count >= 1, or null for this job's share of the cores")
        return int(threads)
    cores = usable_cores() if cores is None else cores
    at_once = int(os.environ.get(JOBS_AT_ONCE) or 1) if at_once is None else at_once
    share = max(1, cores // max(1, at_once))
    ceiling = os.environ.get("OMP_NUM_THREADS", "").strip()
    return min(share, int(ceiling)) if ceiling.isdigit() and int(ceiling) >= 1 else share
