"""The tolerant submitit launcher (hydra_plugins/uniad_bench_launcher) in seconds, on submitit's local executor.

A tiny Hydra app sweeps x=0,1,2 with ``hydra/launcher=local`` (this repo's conf/hydra/launcher/local.yaml);
the job x=1 dies without a result (``os._exit``, as a SIGKILL or OOM would leave it). Upstream's launcher
raises out of the sweep at the first such job and drops the other results; ours logs the dead job and
returns all the others. The real-SLURM suite (tests/slurm, ``make test-slurm``) covers scancel and requeue.
"""

from __future__ import annotations

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
