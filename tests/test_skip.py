"""A completed record is reused only by the job it records: a skip compares configs as a resume does."""

from __future__ import annotations

import json

import pytest

from bench.errors import BenchError
from bench.job import run
from tests.conftest import compose_cfg

SMOKE = ["profile=smoke", "data.generator.n_train=4", "trainer.epochs=1", "backbone.weights=none"]


@pytest.fixture
def data_copies(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIAD_BENCH_DATA", str(tmp_path / "copy1"))
    monkeypatch.setenv("UNIAD_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_another_model_in_a_completed_run_dir_is_refused_and_the_record_kept(data_copies):
    run_dir = data_copies / "uniad"
    first = run(compose_cfg(SMOKE), run_dir)
    before = (run_dir / "metrics.json").read_text()
    with pytest.raises(BenchError) as error:
        run(compose_cfg([*SMOKE, "model=mlp"]), run_dir)
    message = str(error.value)
    assert "model." in message and "rerun=true" in message and "\n" not in message
    assert error.value.record_path is None and (run_dir / "metrics.json").read_text() == before
    # keys that change no number still reuse it
    again = run(compose_cfg([*SMOKE, "logger=csv", "trainer.num_workers=1", "eval.save_maps=1"]), run_dir)
    assert again["skipped"] and again["metrics"] == first["metrics"]


def test_a_sweep_over_another_data_copy_does_not_take_the_first_copys_records(data_copies, monkeypatch):
    run_dir = data_copies / "cell"
    run(compose_cfg(SMOKE), run_dir)
    monkeypatch.setenv("UNIAD_BENCH_DATA", str(data_copies / "copy2"))  # paths.data_root: out of run-dir names
    with pytest.raises(BenchError, match="data.root"):
        run(compose_cfg(SMOKE), run_dir)
    assert json.loads((run_dir / "metrics.json").read_text())["config"]["data"]["root"].endswith("copy1")


def test_evaluation_settings_are_compared_for_a_skip(data_copies):
    run_dir = data_copies / "cell"
    run(compose_cfg(SMOKE), run_dir)
    with pytest.raises(BenchError, match="eval.metrics"):
        run(compose_cfg([*SMOKE, "eval.metrics=all"]), run_dir)
