"""Everything checkable without training is checked before it (issue 14 point 6): one line, no training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import bench.job
from bench.errors import BenchError
from bench.job import run
from bench.validate import validate_config
from data.errors import DatasetError
from tests.conftest import compose_cfg
from tests.test_mvtec import make_tree


@pytest.mark.parametrize(("override", "named"), [
    ("eval.metrics=[image_auroc,pixel_aucroc]", "pixel_aucroc"),
    ("eval.normal_pixel_budget=0", "eval.normal_pixel_budget"),
    ("eval.normal_pixel_budget=-5", "eval.normal_pixel_budget"),
    ("trainer.epochs=-3", "trainer.epochs"),
    ("trainer.epochs=0", "trainer.epochs"),
    ("trainer.epochs=2.7", "trainer.epochs"),
    ("data.categories=[]", "data.categories"),
    ("seed=1.5", "seed"),
    ("seed=abc", "seed"),
    ("trainer.device=tpu", "trainer.device"),
])
def test_bad_config_values_are_refused_in_one_line(override, named):
    with pytest.raises(BenchError) as error:
        validate_config(compose_cfg(["profile=smoke", override]))
    assert named in str(error.value) and "\n" not in str(error.value)


def test_good_config_values_pass():
    validate_config(compose_cfg(["profile=smoke", "eval.normal_pixel_budget=1000", "eval.metrics=all", "seed=0",
                                 "data.categories=[brick]", "trainer.device=cpu"]))
    validate_config(compose_cfg(["profile=smoke", "eval.normal_pixel_budget=null"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_one_line():
    with pytest.raises(BenchError, match="CUDA is not available"):
        validate_config(compose_cfg(["profile=smoke", "trainer.device=cuda"]))


@pytest.fixture
def never_trains(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(bench.job, "fit", fail)
    monkeypatch.setattr(bench.job, "build_detector", fail)


@pytest.mark.parametrize("override", ["trainer.epochs=-3", "trainer.epochs=2.7", "data.categories=[]",
                                      "eval.metrics=[auroc]"])
def test_a_job_with_a_bad_value_fails_before_training_with_a_record(tmp_paths, never_trains, override):
    with pytest.raises(BenchError):
        run(compose_cfg(["profile=smoke", override]), tmp_paths / "run")
    record = json.loads((tmp_paths / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and override.split("=")[0] in record["error"]


@pytest.mark.parametrize("where", ["train", "test"])
def test_a_truncated_or_empty_image_is_named_before_training(tmp_paths, never_trains, where):
    root = make_tree(tmp_paths / "mvtec")
    if where == "train":
        bad = root / "bottle" / "train" / "good" / "001.png"
        bad.write_bytes(b"")
    else:
        bad = root / "grid" / "test" / "bent" / "000.png"
        bad.write_bytes(bad.read_bytes()[:70])  # the header survives: the layout scan passes
    with pytest.raises(DatasetError) as error:
        run(compose_cfg(["profile=smoke", "data=mvtec", f"data.root={root}"]), tmp_paths / "run")
    assert str(bad) in str(error.value) and "\n" not in str(error.value)
    assert str(bad) in json.loads((tmp_paths / "run" / "metrics.json").read_text())["error"]


def test_a_file_gone_after_the_scan_is_named_and_a_checked_file_is_not_decoded_again(tmp_path, monkeypatch):
    from bench.validate import validate_data
    from data.mvtec import MVTecDataset

    root = make_tree(tmp_path / "mvtec")
    dataset = MVTecDataset(root, "train", image_size=32)
    decoded = []
    import data.transforms

    real = data.transforms.check_image
    monkeypatch.setattr(data.transforms, "check_image", lambda p: decoded.append(p) or real(p))
    validate_data([dataset], tmp_path / "index")
    validate_data([dataset], tmp_path / "index")
    assert len(decoded) == len(dataset.files())  # the second job only stats the files
    gone = dataset.samples[1].path
    Path(gone).unlink()
    with pytest.raises(DatasetError, match=f"unreadable image {gone}"):
        validate_data([dataset], tmp_path / "index")
