"""The tolerant submitit launcher (hydra_plugins/uniad_bench_launcher) in seconds, on submitit's local executor.

A tiny Hydra app sweeps x=0,1,2 with ``hydra/launcher=local`` (this repo's conf/hydra/launcher/local.yaml);
the job x=1 dies without a result (``os._exit``, as a SIGKILL or OOM would leave it). Upstream's launcher
raises out of the sweep at the first such job and drops the other results; ours logs the dead job and
returns all the others. The real-SLURM suite (tests/slurm, ``make test-slurm``) covers scancel and requeue.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

APP = """
import os
from pathlib import Path

import hydra


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg):
    if cfg.x == 1:
        os._exit(3)  # dies: no result pickle, as after SIGKILL or the OOM killer
    out = Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    (out / "done.txt").write_text(str(cfg.x))
    return cfg.x


if __name__ == "__main__":
    main()
"""

CONFIG = """
defaults:
  - override hydra/launcher: local
  - _self_
x: 0
hydra:
  searchpath: [file://{conf}]
  sweep:
    dir: {sweep}
    subdir: x=${{x}}
  launcher:
    timeout_min: 2
    cpus_per_task: 1
    mem_gb: 1
"""


@pytest.mark.slow  # a subprocess end to end: make test, not the fast tier
def test_a_job_that_dies_does_not_abort_the_sweep(tmp_path):
    (tmp_path / "app.py").write_text(APP)
    sweep = tmp_path / "sweep"
    (tmp_path / "config.yaml").write_text(textwrap.dedent(CONFIG.format(conf=ROOT / "conf", sweep=sweep)))
    proc = subprocess.run([sys.executable, "app.py", "-m", "x=0,1,2"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=180, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert "ended without a result" in output and "x=1" in output  # the dead job is named
    assert (sweep / "x=0" / "done.txt").read_text() == "0" and (sweep / "x=2" / "done.txt").read_text() == "2"
    assert not (sweep / "x=1" / "done.txt").exists()
    assert (sweep / "x=1" / ".hydra" / "overrides.yaml").is_file()  # so the sweep callback lists the cell


PARALLEL_APP = """
import os
import time
from pathlib import Path

import hydra


@hydra.main(version_base="1.3", config_path=".", config_name="config")
def main(cfg):
    out = Path(hydra.core.hydra_config.HydraConfig.get().runtime.output_dir)
    start = time.time()
    time.sleep(1.5)
    (out / "span.txt").write_text(f"{start} {time.time()} {os.environ.get('UNIAD_BENCH_JOBS_AT_ONCE')}")


if __name__ == "__main__":
    main()
"""


@pytest.mark.slow
@pytest.mark.parametrize("max_parallel", [1, 2])
def test_the_local_launcher_runs_at_most_max_parallel_jobs_and_tells_them(tmp_path, max_parallel):
    (tmp_path / "app.py").write_text(PARALLEL_APP)
    sweep = tmp_path / "sweep"
    (tmp_path / "config.yaml").write_text(textwrap.dedent(CONFIG.format(conf=ROOT / "conf", sweep=sweep)))
    proc = subprocess.run([sys.executable, "app.py", "-m", "x=0,1,2", f"hydra.launcher.max_parallel={max_parallel}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    spans = [(sweep / f"x={x}" / "span.txt").read_text().split() for x in range(3)]
    assert {s[2] for s in spans} == {str(max_parallel)}  # each job knows how many share the cores
    events = sorted([(float(s[0]), 1) for s in spans] + [(float(s[1]), -1) for s in spans])
    running, most = 0, 0
    for _, step in events:
        running += step
        most = max(most, running)
    assert most <= max_parallel


def test_jobs_at_once_and_torch_threads_share_the_usable_cores(monkeypatch):
    from bench.errors import BenchError
    from bench.threads import JOBS_AT_ONCE, jobs_at_once, torch_threads, usable_cores

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)  # make test sets it; the first checks are without a ceiling
    assert jobs_at_once(None, 2, n_jobs=45, cores=16) == 8  # as many as the cores allow at cpus_per_task each
    assert jobs_at_once(3, 2, n_jobs=45, cores=16) == 3 and jobs_at_once(None, 2, n_jobs=2, cores=16) == 2
    assert jobs_at_once(None, 4, n_jobs=9, cores=2) == 1
    assert torch_threads(None, cores=16, at_once=4) == 4 and torch_threads(3, cores=16, at_once=4) == 3
    monkeypatch.setenv(JOBS_AT_ONCE, "2")
    assert torch_threads(None, cores=8) == 4
    monkeypatch.delenv(JOBS_AT_ONCE)
    assert torch_threads(None) == usable_cores()  # one job: every core this process may use
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the user's own ceiling
    assert torch_threads(None, cores=8) == 1 and torch_threads(3, cores=8) == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "64")
    assert torch_threads(None, cores=8, at_once=2) == 4
    with pytest.raises(BenchError, match="trainer.threads=0"):
        torch_threads(0)


def test_the_suites_sweeper_and_launchers_are_found_from_any_folder(tmp_path):
    """`make install`'s editable install keeps hydra_plugins/ visible to Hydra's plugin scan outside the checkout
    (a sweep started elsewhere failed with "Could not find 'hydra/sweeper/table'")."""
    probe = ("from hydra.core.plugins import Plugins\n"
             "from hydra.plugins.launcher import Launcher\n"
             "from hydra.plugins.sweeper import Sweeper\n"
             "for kind in (Sweeper, Launcher):\n"
             "    print(*sorted(p.__module__ for p in Plugins.instance().discover(kind)))\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    found = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=120)
    assert found.returncode == 0, found.stderr[-2000:]
    assert "hydra_plugins.uniad_bench_sweeper" in found.stdout, found.stdout
    assert "hydra_plugins.uniad_bench_launcher" in found.stdout, found.stdout
