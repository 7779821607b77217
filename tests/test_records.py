"""A record never lies: rerun, resume under another config, NaN weights, failures, eval checkpoints.

Each test runs the real job on profile=smoke (seconds) with the data and feature cache shared by the module.
"""

from __future__ import annotations

import errno
import json
import math
from pathlib import Path

import pytest
import torch

from bench import checkpoint
from bench.errors import BenchError
from bench.groups import job_choices
from bench.job import run
from record.parse import parse_record
from tests.conftest import compose_cfg

SMOKE = ["profile=smoke", "data.generator.n_train=4", "trainer.epochs=2"]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    return tmp_path_factory.mktemp("shared")


@pytest.fixture
def paths(tmp_path, shared, monkeypatch):
    monkeypatch.setenv("UNIAD_BENCH_DATA", str(shared / "datasets"))
    monkeypatch.setenv("UNIAD_BENCH_CACHE", str(shared / "cache"))
    return tmp_path


def record_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def killed_after_epoch(monkeypatch, epoch: int) -> None:
    """checkpoint.save raises KeyboardInterrupt right after writing epoch ``epoch``'s checkpoint."""
    save = checkpoint.save

    def save_then_die(path, **payload):
        save(path, **payload)
        if payload["epoch"] == epoch:
            raise KeyboardInterrupt("killed")

    monkeypatch.setattr(checkpoint, "save", save_then_die)


# ------------------------------------------------------------------------------- 1. rerun=true


def test_rerun_trains_again_and_keeps_the_old_record_and_checkpoint(paths):
    run_dir = paths / "r"
    first = run(compose_cfg(SMOKE), run_dir)
    again = run(compose_cfg([*SMOKE, "rerun=true", "trainer.lr=0.05"]), run_dir)
    assert again["status"] == "completed" and again["timing"]["epochs_run"] == 2  # not "resuming at 2/2"
    assert again["config"]["trainer"]["lr"] == 0.05
    assert torch.load(run_dir / "last.ckpt", weights_only=True)["config"]["trainer"]["lr"] == 0.05
    (previous,) = (run_dir / ".previous").iterdir()
    assert record_of(previous) == first and (previous / "last.ckpt").is_file()
    assert again["metrics"] != first["metrics"]


# ------------------------------------------------------------------- 2. resume under another config


def test_resume_under_a_changed_config_is_refused_and_under_the_same_one_goes_on(paths, monkeypatch):
    run_dir = paths / "r"
    save = checkpoint.save
    killed_after_epoch(monkeypatch, 0)
    with pytest.raises(KeyboardInterrupt):
        run(compose_cfg(SMOKE), run_dir)
    monkeypatch.setattr(checkpoint, "save", save)
    state = torch.load(run_dir / "last.ckpt", weights_only=True)  # plain types: loads with weights_only
    assert state["config"]["trainer"]["lr"] == 1e-3 and state["epoch"] == 0

    with pytest.raises(BenchError) as error:
        run(compose_cfg([*SMOKE, "trainer.lr=0.05", "model.fj=false"]), run_dir)
    message = str(error.value)
    assert "\n" not in message and "model.fj" in message and "trainer.lr" in message and "rerun=true" in message
    assert record_of(run_dir)["status"] == "failed"

    # keys that change no number (logger, device, ckpt cadence, maps) do not block the resume
    resumed = run(compose_cfg([*SMOKE, "trainer.ckpt_every=5", "eval.save_maps=1", "trainer.device=cpu"]), run_dir)
    assert resumed["status"] == "completed" and resumed["timing"]["epochs_run"] == 1


# ------------------------------------------------------------------------------ 7. NaN never saved


def test_weights_gone_non_finite_in_the_last_step_are_not_checkpointed(paths, monkeypatch):
    """The loss of the last step is finite, its gradient is not: the weights become NaN after the step."""
    calls = []
    real_clip = torch.nn.utils.clip_grad_norm_

    def poisoned(params, max_norm, *args, **kwargs):
        params = list(params)
        calls.append(1)
        if len(calls) == steps_per_epoch * 2:  # the very last step of epoch 2
            for p in params:
                p.grad.fill_(float("nan"))
        return real_clip(params, max_norm, *args, **kwargs)

    cfg = compose_cfg(SMOKE)
    from bench.build import build_datasets

    steps_per_epoch = math.ceil(len(build_datasets(cfg.data)[0]) / int(cfg.trainer.batch_size))
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", poisoned)
    run_dir = paths / "r"
    with pytest.raises(FloatingPointError, match="non-finite"):
        run(cfg, run_dir)
    assert len(calls) == 2 * steps_per_epoch
    state = torch.load(run_dir / "last.ckpt", weights_only=True)
    assert state["epoch"] == 0  # epoch 1's poisoned weights never landed in last.ckpt
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert "non-finite" in record_of(run_dir)["error"]

    # a checkpoint that holds NaN weights (written by an older version) is refused, not resumed forever
    state["model"] = {k: v.clone().fill_(float("nan")) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    torch.save(state, run_dir / "last.ckpt")
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", real_clip)
    with pytest.raises(BenchError, match="non-finite weights.*rerun=true"):
        run(cfg, run_dir)


# ------------------------------------------------------------------------------ 8. failures leave a record


def test_a_failure_before_training_still_writes_the_failed_record(paths):
    run_dir = paths / "r"
    # an unknown device used to fail outside the job's try block, leaving no record at all
    with pytest.raises(BenchError):
        run(compose_cfg([*SMOKE, "trainer.device=tpu"]), run_dir)
    assert record_of(run_dir)["status"] == "failed" and "trainer.device" in record_of(run_dir)["error"]


def test_disk_full_while_checkpointing_removes_the_temp_file_and_writes_the_record(paths, monkeypatch):
    def disk_full(payload, file):
        Path(file).write_bytes(b"\0" * 4096)  # half a checkpoint ...
        raise OSError(errno.ENOSPC, "No space left on device")  # ... then the disk is full

    monkeypatch.setattr(checkpoint.torch, "save", disk_full)
    run_dir = paths / "r"
    with pytest.raises(OSError) as error:
        run(compose_cfg(SMOKE), run_dir)
    assert error.value.errno == errno.ENOSPC
    assert sorted(p.name for p in run_dir.iterdir()) == ["metrics.json"]  # no temp file, no lock
    record = record_of(run_dir)
    assert record["status"] == "failed" and "no space left" in record["error"].lower()
    assert error.value.record_path == run_dir / "metrics.json"


def test_a_record_that_cannot_be_written_is_never_pointed_at(paths, monkeypatch):
    from bench.__main__ import error_line
    from record import store as record_store

    def disk_full(path, payload):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(record_store, "write_json_atomic", disk_full)
    run_dir = paths / "r"
    with pytest.raises(BenchError) as error:
        run(compose_cfg([*SMOKE, "trainer.epochs=2.5"]), run_dir)
    assert error.value.record_path is None and not (run_dir / "metrics.json").exists()
    line = error_line(error.value)
    assert "metrics.json" not in line and "no record written" in line
    assert "record:" not in error_line(error.value)


# -------------------------------------------------------------------------------- task=eval ckpt=PATH


def test_an_unreadable_user_checkpoint_is_named_without_advice_to_delete_it(paths):
    bad = paths / "given.ckpt"
    bad.write_bytes(b"garbage")
    with pytest.raises(BenchError) as error:
        run(compose_cfg(["profile=smoke", "task=eval", f"ckpt={bad}"]), paths / "eval")
    assert str(bad) in str(error.value) and "delete" not in str(error.value)
    assert record_of(paths / "eval")["status"] == "failed"
    # the run's own last.ckpt may be deleted (or rerun=true) to start over: that advice stays
    (paths / "r").mkdir()
    (paths / "r" / "last.ckpt").write_bytes(b"garbage")
    with pytest.raises(BenchError, match="delete it"):
        run(compose_cfg(SMOKE), paths / "r")


def test_eval_rebuilds_the_model_from_the_checkpoint_and_refuses_a_conflicting_override(paths):
    arch = ["arch.hidden_dim=16", "model.nma=false", "decoder=lqd_b"]
    fit = run(compose_cfg([*SMOKE, *arch]), paths / "fit")
    ckpt = paths / "fit" / "last.ckpt"
    overrides = ["profile=smoke", "data.generator.n_train=4", "task=eval", f"ckpt={ckpt}"]
    # the command line's group choices, as the CLI passes them (decoder: its default, lqd_a)
    line = compose_cfg(overrides, hydra=True)
    choices = job_choices(line.hydra.runtime.choices)
    assert choices["decoder"] == "lqd_a"
    evaluated = run(compose_cfg(overrides), paths / "eval", overrides, choices)  # no training override retyped
    assert evaluated["status"] == "completed"
    assert evaluated["config"]["arch"]["hidden_dim"] == 16 and evaluated["config"]["decoder"]["design"] == "lqd_b"
    # the record's choices are the checkpoint's, so the reports place it in the lqd_b row, not the command line's
    assert evaluated["choices"]["decoder"] == "lqd_b"
    assert parse_record(record_of(paths / "eval")).group_choices["decoder"] == "lqd_b"
    assert evaluated["metrics"] == fit["metrics"]
    assert evaluated["checkpoint"] == {"path": str(ckpt), "epoch": 1}

    conflict = [*overrides, "arch.hidden_dim=32", "model.nma=true"]
    with pytest.raises(BenchError) as error:
        run(compose_cfg(conflict), paths / "eval2", conflict)
    assert "arch.hidden_dim" in str(error.value) and "model.nma" in str(error.value) and "\n" not in str(error.value)
    # task=vis_recon builds each listed run's model from its checkpoint's config, not from its record
    from bench.visualize import _load_run

    record = record_of(paths / "fit")
    record["config"]["arch"]["hidden_dim"] = 999
    (paths / "fit" / "metrics.json").write_text(json.dumps(record))
    run_cfg, detector = _load_run(str(paths / "fit"), compose_cfg(["profile=smoke"]), torch.device("cpu"))
    assert run_cfg.arch.hidden_dim == 16 and run_cfg.decoder.design == "lqd_b"

    other = [*overrides, "profile=demo"]  # another profile sets other sizes: a conflict too
    with pytest.raises(BenchError, match="arch.hidden_dim"):
        run(compose_cfg(other), paths / "eval3", other)
