"""task=predict scores a folder of unlabelled images; heat-map pictures; ckpt= paths as typed."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bench.__main__ import quote_paths
from bench.errors import BenchError
from bench.heatmap import map_scale, overlay
from bench.predict import check_threshold, find_images
from tests.conftest import ROOT, fit_isolated


def test_overlay_colours_the_map_on_one_scale():
    image = np.zeros((4, 4, 3))
    amap = np.zeros((4, 4))
    amap[0, 0] = 1.0
    picture = np.asarray(overlay(image, amap, 0.0, 1.0))
    assert picture.shape == (4, 4, 3) and picture.dtype == np.uint8
    assert not np.array_equal(picture[0, 0], picture[3, 3])  # the hot pixel is another colour
    # on a scale twice as wide the same map is cooler: the scale is the caller's, not the map's own
    assert not np.array_equal(np.asarray(overlay(image, amap, 0.0, 2.0))[0, 0], picture[0, 0])
    assert map_scale([np.array([1.0, np.nan]), np.array([-2.0, 3.0])]) == (-2.0, 3.0)
    assert map_scale([]) == (0.0, 1.0)


def _images(root, names, size=40):
    rng = np.random.default_rng(0)
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)


def test_find_images_takes_every_image_format_at_any_depth_and_leaves_the_rest(tmp_path):
    _images(tmp_path, ["a.png", "x/b.JPG", "x/y/c.tiff", "d.bmp", ".hidden/e.png", "x/.f.png"])
    (tmp_path / "notes.txt").write_text("not an image")
    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert found == ["a.png", "d.bmp", "x/b.JPG", "x/y/c.tiff"]
    with pytest.raises(BenchError, match="predict.input=.*no such folder"):
        find_images(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BenchError, match="no image"):
        find_images(tmp_path / "empty")
    with pytest.raises(BenchError, match="predict.input=FOLDER"):
        find_images(None)


@pytest.mark.parametrize("bad", ["high", float("nan"), True])
def test_a_threshold_is_a_finite_number(bad):
    assert check_threshold(None) is None and check_threshold(2) == 2.0
    with pytest.raises(BenchError, match="predict.threshold"):
        check_threshold(bad)


def test_a_sweep_cells_checkpoint_path_is_quoted_for_hydra_where_it_exists(tmp_path):
    cell = tmp_path / "decoder.design=lqd_a,model.nma=true" / "seed=1"
    cell.mkdir(parents=True)
    (cell / "last.ckpt").write_bytes(b"")
    args = quote_paths(["bench", "task=eval", f"ckpt={cell}/last.ckpt", "model.nma=true,false", "ckpt=a,b"])
    assert args[2] == f"ckpt='{cell}/last.ckpt'"
    assert args[3] == "model.nma=true,false"  # a sweep stays a sweep
    assert args[4] == "ckpt=a,b"  # not a path on disk: Hydra's grammar decides


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    record = fit_isolated(root, ["profile=smoke", "data.generator.n_train=4", "trainer.epochs=1"], "fit")
    assert record["status"] == "completed"
    return root


@pytest.mark.slow
def test_predict_scores_a_folder_from_a_sweep_cells_run_dir_as_typed(trained, tmp_path):
    cell = tmp_path / "decoder.design=lqd_a,model.nma=true" / "seed=1"
    cell.mkdir(parents=True)
    os.link(trained / "fit" / "last.ckpt", cell / "last.ckpt")
    folder = tmp_path / "incoming"
    _images(folder, ["one.png", "deep/er/two.jpg", "three.bmp"])
    run_dir = tmp_path / "run"
    env = {**os.environ, "UNIAD_BENCH_DATA": str(trained / "datasets"), "UNIAD_BENCH_CACHE": str(trained / "cache")}
    proc = subprocess.run([sys.executable, "-m", "bench", "task=predict", f"ckpt={cell}", f"predict.input={folder}",
                           "predict.threshold=0", f"hydra.run.dir={run_dir}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with (run_dir / "predictions.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == ["deep/er/two.jpg", "one.png", "three.bmp"]
    assert all(float(r["score"]) >= 0 and r["label"] == "1" for r in rows)  # every score is >= 0
    for row in rows:
        with Image.open(run_dir / "maps" / f"{row['path']}.png") as picture:
            assert picture.mode == "RGB" and picture.size == (64, 64)  # the smoke profile's image size
    import json

    record = json.loads((run_dir / "metrics.json").read_text())
    assert record["status"] == "completed" and record["task"] == "predict"
    assert record["outputs"]["images"] == 3 and record["checkpoint"]["path"] == str(cell)
