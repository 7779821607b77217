"""Every key that ``record.keys.NEUTRAL`` calls neutral moves no number: a run that changes it alone
gives the same metrics as the run without (profile=smoke, random backbone). A new entry needs a line here."""

from __future__ import annotations

import pytest
import torch

from bench.job import run
from record.keys import NEUTRAL, neutral_for
from tests.conftest import compose_cfg, fit_isolated

SMOKE = ["profile=smoke", "data.generator.n_train=4", "trainer.epochs=2", "backbone.weights=none",
         "trainer.ckpt_every=1"]
# NEUTRAL entry -> the override that changes it alone
CHANGES = {
    "rerun": "rerun=true",
    "lock_stale_h": "lock_stale_h=1",
    "ckpt": "ckpt=/nonexistent/last.ckpt",  # read by task=eval only
    "paths.data_root": None,  # another copy of the (generated) data: set through the environment below
    "paths.cache_root": None,
    "logger": "logger=csv",
    "trainer.num_workers": "trainer.num_workers=1",
    "trainer.threads": "trainer.threads=1",  # the tests run one math thread: 1 is what they use anyway
    "verbose": "verbose=true",
    "trainer.ckpt_every": "trainer.ckpt_every=2",
    "cache.disk": "cache.disk=false",
    "eval": "eval.pool_size=4",  # resume only: training is the same (compared on the weights)
    "eval.save_maps": "eval.save_maps=1",
    "eval.batch_size": "eval.batch_size=3",
    "eval.every": "eval.every=1",  # a test curve after epoch 1; the headline is the last epoch's
    "eval.conventions": "eval.conventions=[official]",  # other conventions' metrics beside ours
    "vis": "vis.num_images=1",
    "experiment": None,  # a config group's name too: set on the composed config below
    "n_seeds": "n_seeds=3",
    "profile_name": "profile_name=other",
}
# not config keys of a record (the launcher runs the job elsewhere), or not neutral for numbers at all
NOT_NUMBERS = {"seed", "hydra/launcher"} | {k for k in NEUTRAL if k.startswith("hydra.launcher.")}


def test_every_neutral_entry_has_its_check():
    assert set(NEUTRAL) - NOT_NUMBERS == set(CHANGES)
    assert "trainer.device" not in NEUTRAL and "trainer.compile" not in NEUTRAL and "seed" not in neutral_for("resume")


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    root = tmp_path_factory.mktemp("neutral")
    record = fit_isolated(root, SMOKE, "base", data="data")
    return root, record


def _weights(run_dir):
    return torch.load(run_dir / "last.ckpt", weights_only=True)["model"]


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(CHANGES))
def test_a_neutral_key_moves_no_number(baseline, key, tmp_path, monkeypatch):
    root, base = baseline
    monkeypatch.setenv("UNIAD_BENCH_DATA", str(tmp_path / "data" if key == "paths.data_root" else root / "data"))
    monkeypatch.setenv("UNIAD_BENCH_CACHE", str(tmp_path / "cache" if key == "paths.cache_root" else root / "cache"))
    overrides = [*SMOKE, *([CHANGES[key]] if CHANGES[key] else [])]
    cfg = compose_cfg(overrides)
    if key == "experiment":
        cfg.experiment = "other"
    record = run(cfg, tmp_path / "run")
    assert record["status"] == "completed"
    if key == "eval":
        assert record["metrics"] != base["metrics"]  # the setting is live, and training is not touched by it
    else:
        headline = {k: v for k, v in record["metrics"].items() if k != "conventions"}
        assert headline == base["metrics"], key
    assert record["complexity"] == base["complexity"]
    got, want = _weights(tmp_path / "run"), _weights(root / "base")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), key
