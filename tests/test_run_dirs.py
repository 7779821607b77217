"""A sweep cell's run dir is one folder inside the sweep dir, whatever its overrides hold (README, "Bad input,
reruns and resuming"), and two configs that compute different numbers never share one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from bench.resolvers import NAME_BYTES, run_dir_name
from tests.conftest import CONF, ROOT


def _subdir(overrides: list[str]) -> str:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=overrides, return_hydra_config=True)
        return str(cfg.hydra.sweep.subdir)


def _inside(sweep: Path, subdir: str) -> bool:
    cell = Path(os.path.normpath(sweep / subdir))
    return cell.parent.parent == sweep and cell.name.startswith("seed=")


@pytest.mark.parametrize("overrides", [
    ["data.root=../../data/x"], ["backbone.weights=../w.pt"], ["backbone.weights=/abs/w.pt", "model.fj=false"],
    ["data.root=..", "data.categories=[a,b]"], ["data.root=x/../../../etc"], ["data.root='a\\b'"], [],
])
def test_a_cell_is_one_folder_inside_the_sweep_dir(tmp_path, overrides):
    subdir = _subdir(["seed=3", *overrides])
    assert _inside(tmp_path / "sweep", subdir), subdir
    assert subdir.count("/") == 1 and ".." not in Path(subdir).parts


def test_configs_that_differ_before_a_climbing_value_get_their_own_dirs(tmp_path):
    # without escaping, 'arch.hidden_dim=16,data.root=..' and '..' cancel: both land in <sweep>/data/x/seed=N
    sweep = tmp_path / "sweep"
    cells = {os.path.normpath(sweep / _subdir([f"arch.hidden_dim={h}", "data.root=../../data/x"])) for h in (16, 32)}
    assert len(cells) == 2


def test_keys_that_change_numbers_name_the_cell():
    # the data root moves every number (data.root follows it): two roots are two cells
    assert _subdir(["paths.data_root=/data/copy1"]) != _subdir(["paths.data_root=/data/copy2"])
    assert _subdir(["trainer.device=cpu"]) != _subdir([])
    # keys that change no number do not (a rerun of a sweep with another logger finds its cells)
    assert _subdir(["logger=csv", "rerun=true", "paths.cache_root=/elsewhere"]) == _subdir([])


def test_run_dir_names_are_injective_and_bounded():
    values = ["a/b", "a%2Fb", "a\\b", "a%5Cb", "a%b", "x" * 400, "x" * 399 + "y"]
    names = [run_dir_name(f"data.root={v}") for v in values]
    assert len(set(names)) == len(names)
    assert all("/" not in n and "\\" not in n and len(n.encode()) <= NAME_BYTES for n in names)
    assert run_dir_name("profile=smoke,seed_free=1") == "profile=smoke,seed_free=1"  # plain names stay readable


@pytest.mark.slow
def test_a_sweep_with_a_relative_root_keeps_its_records_inside(tmp_path):
    """task=complexity reads no data: seconds. The record lands in the sweep dir and the summary counts it."""
    sweep = tmp_path / "sweep"
    env = {**os.environ, "UNIAD_BENCH_DATA": str(tmp_path / "datasets"), "UNIAD_BENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "bench", "-m", "task=complexity", "profile=smoke",
                           "backbone.weights=none", "data.root=../../../elsewhere/x", "model=mlp",
                           f"hydra.sweep.dir={sweep}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (record,) = [json.loads(p.read_text()) for p in sweep.rglob("metrics.json")]
    assert record["status"] == "completed"
    assert not (tmp_path / "elsewhere").exists()
    assert "1/1 cells completed" in proc.stdout
