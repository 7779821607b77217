"""Sweeps on a real SLURM cluster (``make test-slurm``: tests/slurm/run.sh starts a one-node cluster).

Each test runs ``python -m bench -m ... hydra/launcher=slurm`` as a subprocess, the way a user does,
and checks the records, SLURM's accounting (sacct) and the submitit job logs. Skipped without a
cluster (``SLURM_CONF`` unset or ``sinfo`` failing), e.g. in ``make test``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PARTITION = os.environ.get("UNIAD_SLURM_PARTITION", "test")
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "COMPLETING", "CONFIGURING", "SUSPENDED", "RESIZING", "REQUEUE_HOLD"}


def _cluster_missing() -> str | None:
    if not os.environ.get("SLURM_CONF"):
        return "no SLURM test cluster (SLURM_CONF unset): run make test-slurm"
    if shutil.which("sinfo") is None:
        return "sinfo not found"
    try:
        subprocess.run(["sinfo", "-h"], check=True, capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"sinfo fails: {exc}"
    return None


_MISSING = _cluster_missing()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(_MISSING is not None, reason=_MISSING or "")]


# -- helpers -----------------------------------------------------------------------------------
def slurm(*argv: str) -> str:
    return subprocess.run(list(argv), check=True, capture_output=True, text=True, timeout=30).stdout


def launcher_overrides(sweep_dir: Path, timeout_min: int = 5) -> list[str]:
    """The production launcher config (conf/hydra/launcher/slurm.yaml), shrunk for a 1-node CPU cluster."""
    return [
        "hydra/launcher=slurm",
        f"hydra.launcher.partition={PARTITION}",
        "hydra.launcher.gpus_per_node=0",
        "hydra.launcher.cpus_per_task=1",
        "hydra.launcher.mem_gb=1",
        f"hydra.launcher.timeout_min={timeout_min}",
        f"hydra.sweep.dir={sweep_dir}",
    ]


class Sweep:
    """``python -m bench -m ...`` running in the background; its output goes to ``<sweep dir>.log``."""

    def __init__(self, sweep_dir: Path, env: dict, overrides: list[str], timeout_min: int = 5) -> None:
        self.dir = sweep_dir
        self.log = sweep_dir.with_name(sweep_dir.name + ".log")
        argv = [sys.executable, "-m", "bench", "-m", *overrides, *launcher_overrides(sweep_dir, timeout_min)]
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.t0 = time.monotonic()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"the sweep hung (> {timeout:.0f} s); its output:\n{self.output()[-3000:]}")

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tasks(self) -> dict[int, str]:
        """Array index -> SLURM job id ``<array job>_<index>``, from submitit's folders under .submitit/."""
        folder = self.dir / ".submitit"  # a single job is not an array: its folder is <job id>
        if not folder.is_dir():
            return {}
        names = [p.name for p in folder.iterdir() if (p / f"{p.name}_submitted.pkl").is_file()]
        return {int(name.split("_")[1]) if "_" in name else 0: name for name in names}

    def wait_tasks(self, n: int, timeout: float = 60) -> dict[int, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            tasks = self.tasks()
            if len(tasks) >= n:
                return tasks
            if self.proc.poll() is not None:
                break
            time.sleep(0.5)
        pytest.fail(f"{n} jobs were not submitted; sweep output:\n{self.output()[-3000:]}")

    def job_log(self, task: str) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted((self.dir / ".submitit" / task).glob("*_log.*")))


def sacct(job: str, duplicates: bool = False) -> dict[str, list[str]]:
    """JobID -> states (several with ``duplicates``: one per run of a requeued job), allocations only."""
    argv = ["sacct", "-n", "-P", "-X", "-j", job, "-o", "JobID,State"] + (["-D"] if duplicates else [])
    states: dict[str, list[str]] = {}
    for line in slurm(*argv).splitlines():
        if "|" in line:
            job_id, state = line.split("|")[:2]
            states.setdefault(job_id, []).append(state.split()[0])  # "CANCELLED by 0" -> CANCELLED
    return states


def wait_finished(job: str, n: int, timeout: float = 90) -> dict[str, str]:
    """Final SLURM state of each of the ``n`` tasks of array ``job`` (a sweep returns when the results
    are written; the job steps may still be ending)."""
    deadline = time.monotonic() + timeout
    states: dict[str, list[str]] = {}
    while time.monotonic() < deadline:
        states = sacct(job)
        if len(states) >= n and not any(s[-1] in ACTIVE for s in states.values()):
            return {k: v[-1] for k, v in states.items()}
        time.sleep(1)
    pytest.fail(f"jobs of {job} did not finish in {timeout:.0f} s: {states}")


DATA_DIGEST = re.compile(r"@data-[0-9a-f]{8}")  # the resolved data root's digest ending each cell's folder


def records(sweep_dir: Path) -> dict[str, dict]:
    """``{cell/seed=N: record}``, the cell named by its overrides (its data digest left out)."""
    return {DATA_DIGEST.sub("", str(p.parent.relative_to(sweep_dir))): json.loads(p.read_text())
            for p in sweep_dir.rglob("metrics.json")}


@pytest.fixture(scope="session")
def bench_env(tmp_path_factory) -> dict:
    """Dataset and feature cache shared by the tests (generated by the first job), one thread a job."""
    root = tmp_path_factory.mktemp("bench")
    return {**os.environ, "UNIAD_BENCH_DATA": str(root / "datasets"), "UNIAD_BENCH_CACHE": str(root / "cache"),
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


# -- tests -------------------------------------------------------------------------------------
def test_sweep_runs_as_one_job_array(bench_env, tmp_path):
    sweep = Sweep(tmp_path / "sweep", bench_env, ["profile=smoke", "seed=1,2"])
    rc = sweep.wait(timeout=300)
    out = sweep.output()
    assert rc == 0, out[-3000:]
    assert "2/2 cells completed" in out

    recs = records(sweep.dir)
    assert sorted(recs) == ["profile=smoke/seed=1", "profile=smoke/seed=2"], recs.keys()
    assert {r["status"] for r in recs.values()} == {"completed"}
    assert {r["env"]["launcher"] for r in recs.values()} == {"slurm"}

    tasks = sweep.tasks()
    arrays = {t.split("_")[0] for t in tasks.values()}
    assert sorted(tasks) == [0, 1] and len(arrays) == 1, f"not one job array: {tasks}"
    array = arrays.pop()
    assert {r["env"]["slurm_array_job_id"] for r in recs.values()} == {array}
    states = wait_finished(array, 2)
    assert states == {f"{array}_0": "COMPLETED", f"{array}_1": "COMPLETED"}, states


# A job that needs REQUEUE_EPOCHS / (15 to 22 epochs/s on one CPU core) s of training gets
# USR2 60 s before its 2-minute limit (SLURM checks every ~30 s: 30-60 s after it starts);
# submitit checkpoints the Hydra job, requeues it, and the second run resumes from last.ckpt.
REQUEUE_EPOCHS = int(os.environ.get("UNIAD_SLURM_REQUEUE_EPOCHS", "1500"))


def test_time_limit_requeues_and_resumes(bench_env, tmp_path):
    overrides = ["profile=smoke", "seed=7", f"trainer.epochs={REQUEUE_EPOCHS}", "trainer.ckpt_every=1",
                 "trainer.lr_step=1000000", "hydra.launcher.signal_delay_s=60"]
    sweep = Sweep(tmp_path / "sweep", bench_env, overrides, timeout_min=2)
    rc = sweep.wait(timeout=420)
    out = sweep.output()
    assert rc == 0, out[-3000:]

    (task,) = sweep.tasks().values()
    log = sweep.job_log(task)
    assert "Caught signal SIGUSR2" in log and "timed-out" in log, log[-3000:]
    assert "Requeued job" in log, log[-3000:]
    # the job's INFO lines are in its run dir's job.log (the console keeps the sweep's own lines)
    (job_log,) = sweep.dir.rglob("job.log")
    resumed = re.findall(r"resuming from (\S+) at epoch (\d+)/(\d+)", job_log.read_text())
    assert resumed, f"the requeued job did not resume from its checkpoint:\n{log[-3000:]}"
    ckpt, epoch, total = resumed[0]
    assert Path(ckpt).name == "last.ckpt" and 0 < int(epoch) < int(total) == REQUEUE_EPOCHS, resumed

    (rec,) = records(sweep.dir).values()
    assert rec["status"] == "completed", rec.get("error")
    assert int(rec["env"].get("slurm_restart_count", 0)) >= 1, rec["env"]
    assert rec["timing"]["epochs_run"] == REQUEUE_EPOCHS - int(resumed[-1][1])  # the last run only

    array = task.split("_")[0]
    assert wait_finished(array, 1) == {task: "COMPLETED"}
    runs = sacct(array, duplicates=True)[task]
    assert runs[-1] == "COMPLETED" and "REQUEUED" in runs[:-1], runs


def test_cancelled_job_fails_its_cell_not_the_sweep(bench_env, tmp_path):
    # cell 0 finishes in seconds; cell 1 would train for minutes and is cancelled while running
    sweep = Sweep(tmp_path / "sweep", bench_env, ["profile=smoke", "seed=3", "trainer.epochs=2,3000"])
    tasks = sweep.wait_tasks(2)
    long_cell = next(iter(tmp_path.glob("sweep/*trainer.epochs=3000*/seed=3")), None)
    deadline = time.monotonic() + 120
    while (long_cell is None or not (long_cell / ".hydra").is_dir()) and time.monotonic() < deadline:
        assert sweep.proc.poll() is None, sweep.output()[-3000:]
        time.sleep(0.5)
        long_cell = next(iter(tmp_path.glob("sweep/*trainer.epochs=3000*/seed=3")), None)
    assert long_cell is not None, "the long job never started"
    time.sleep(3)  # inside the task function (Hydra made its run dir)
    slurm("scancel", tasks[1])

    rc = sweep.wait(timeout=240)  # does not hang on the job that left no result
    out = sweep.output()
    assert rc != 0, out[-3000:]
    assert "1/2 cells completed" in out, out[-3000:]
    failed = out.split("failed cells:")[-1]
    assert "trainer.epochs=3000" in failed and "no metrics.json" in failed, out[-3000:]
    assert "trainer.epochs=2," not in failed and "trainer.epochs=2/" not in failed, out[-3000:]

    recs = records(sweep.dir)
    assert [r["status"] for k, r in recs.items() if "trainer.epochs=2" in k and "3000" not in k] == ["completed"]
    assert not (long_cell / "metrics.json").exists()

    array = tasks[0].split("_")[0]
    states = wait_finished(array, 2)
    assert states == {tasks[0]: "COMPLETED", tasks[1]: "CANCELLED"}, states


def test_cancelled_pending_job_is_reported(bench_env, tmp_path):
    # one job at a time: cell 1 is still pending when cancelled, so it never makes its run dir
    sweep = Sweep(tmp_path / "sweep", bench_env,
                  ["profile=smoke", "seed=4,5", "hydra.launcher.array_parallelism=1"])
    tasks = sweep.wait_tasks(2)
    slurm("scancel", tasks[1])

    rc = sweep.wait(timeout=240)
    out = sweep.output()
    assert rc != 0, out[-3000:]
    assert "1/2 cells completed" in out, out[-3000:]
    assert re.search(r"failed cells:\s+profile=smoke@data-[0-9a-f]{8}/seed=5: no metrics.json", out), out[-3000:]
    assert records(sweep.dir)["profile=smoke/seed=4"]["status"] == "completed"
    # a task cancelled before it left the array's pending record gets no accounting record of its own
    states = wait_finished(tasks[0].split("_")[0], 1)
    assert states[tasks[0]] == "COMPLETED" and states.get(tasks[1], "CANCELLED") == "CANCELLED", states
