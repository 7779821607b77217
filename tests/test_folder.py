"""data=folder: a user's dataset labelled by folder or by CSV, with and without masks, and each bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from bench.job import run
from data.errors import DatasetError
from data.folder import FolderDataset, scan
from tests.conftest import compose_cfg

FOLDERS = {"train_dir": "train", "test_dir": "test", "labels": None, "mask_dir": "masks"}
CSV = {**FOLDERS, "labels": "labels.csv"}


def _image(path, seed, size=48, defect=False):
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), 120, np.uint8) + rng.integers(0, 20, (size, size, 3), dtype=np.uint8)
    if defect:
        image[10:20, 12:30] = (250, 30, 30)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def _mask(path, size=48):
    mask = np.zeros((size, size), np.uint8)
    mask[10:20, 12:30] = 255
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)


def make_folders(root, categories=("bolt", "cloth"), masks=True, n_train=4):
    """<category>/train/*.png, test/good/*.png, test/crack/*.png and (optionally) masks/crack/<stem>.png."""
    for c, category in enumerate(categories):
        for i in range(n_train):
            _image(root / category / "train" / f"n{i}.png", [c, 0, i])
        for i in range(2):
            _image(root / category / "test" / "good" / f"g{i}.jpg", [c, 1, i])
            _image(root / category / "test" / "crack" / f"d{i}.png", [c, 2, i], defect=True)
            if masks:
                _mask(root / category / "masks" / "crack" / f"d{i}_mask.png")
    return root


def make_csv(root, categories=("bolt", "cloth"), masks=True, rows=None):
    """<category>/train/*.png and <category>/images/*.png listed in <category>/labels.csv."""
    for c, category in enumerate(categories):
        for i in range(3):
            _image(root / category / "train" / f"n{i}.png", [c, 0, i])
        lines = ["path,label,mask" if masks else "path,label"]
        for i in range(2):
            _image(root / category / "images" / f"ok{i}.png", [c, 1, i])
            lines.append(f"images/ok{i}.png,0," if masks else f"images/ok{i}.png,0")
            _image(root / category / "images" / f"bad{i}.png", [c, 2, i], defect=True)
            if masks:
                _mask(root / category / "gt" / f"bad{i}.png")
            lines.append(f"images/bad{i}.png,1,gt/bad{i}.png" if masks else f"images/bad{i}.png,1")
        (root / category / "labels.csv").write_text("\n".join(rows or lines) + "\n")
    return root


@pytest.mark.parametrize("masks", [True, False])
def test_folder_labels_come_from_the_folder_names(tmp_path, masks):
    root = make_folders(tmp_path / "d", masks=masks)
    train = FolderDataset(root, "train", image_size=32, **FOLDERS)
    test = FolderDataset(root, "test", image_size=32, **FOLDERS)
    assert len(train) == 8 and {s.label for s in train.samples} == {0}
    assert train.categories == test.categories == ["bolt", "cloth"]
    assert [(s.defect, s.label) for s in test.samples if s.category == "bolt"] == [
        ("crack", 1), ("crack", 1), ("good", 0), ("good", 0)]
    assert test.has_masks is masks
    for item in test:
        assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)
        assert bool(item["mask"].any()) == (masks and item["label"] == 1)


@pytest.mark.parametrize("masks", [True, False])
def test_csv_labels_and_optional_masks(tmp_path, masks):
    root = make_csv(tmp_path / "d", masks=masks)
    test = FolderDataset(root, "test", categories=["cloth"], image_size=32, **CSV)
    assert test.categories == ["cloth"]
    assert sorted((s.path.rsplit("/", 1)[1], s.label) for s in test.samples) == [
        ("bad0.png", 1), ("bad1.png", 1), ("ok0.png", 0), ("ok1.png", 0)]
    assert test.has_masks is masks
    assert all((s.mask_path is not None) == (masks and s.label == 1) for s in test.samples)


def _error(tmp_path, root, split="test", categories=None, layout=FOLDERS) -> str:
    with pytest.raises(DatasetError) as error:
        scan(root, categories, split, **layout)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_missing_folders_are_named(tmp_path):
    assert "missing dataset root" in _error(tmp_path, tmp_path / "nowhere")
    root = make_folders(tmp_path / "d")
    message = _error(tmp_path, root, categories=["bolt", "screw"])
    assert "missing folder" in message and "screw" in message
    (root / "cloth" / "test").rename(root / "cloth" / "elsewhere")
    assert "missing folder" in _error(tmp_path, root) and "cloth/test" in _error(tmp_path, root)
    assert "missing label file" in _error(tmp_path, make_csv(tmp_path / "c"), layout={**CSV, "labels": "x.csv"})


def test_empty_classes_are_refused(tmp_path):
    root = make_folders(tmp_path / "d")
    for image in (root / "bolt" / "train").iterdir():
        image.unlink()
    assert "no training images" in _error(tmp_path, root, split="train")
    root = make_folders(tmp_path / "e")
    for image in (root / "cloth" / "test" / "crack").iterdir():
        image.unlink()
    assert "no anomalous test images for 'cloth'" in _error(tmp_path, root)
    root = make_folders(tmp_path / "f")
    for image in (root / "bolt" / "test" / "good").iterdir():
        image.unlink()
    assert "no normal test images for 'bolt'" in _error(tmp_path, root)


def test_unreadable_images_are_named(tmp_path):
    root = make_folders(tmp_path / "d")
    broken = root / "cloth" / "test" / "good" / "g1.jpg"
    broken.write_bytes(b"not an image")
    message = _error(tmp_path, root)
    assert "unreadable image" in message and str(broken) in message
    (root / "bolt" / "train" / "n2.png").write_bytes(b"")
    assert "unreadable image" in _error(tmp_path, root, split="train")


@pytest.mark.parametrize("value", ["2", "yes", "", "0.5", "-1"])
def test_labels_other_than_0_or_1_are_refused(tmp_path, value):
    root = make_csv(tmp_path / "d", categories=("bolt",), masks=False)
    _image(root / "bolt" / "images" / "x.png", 9)
    rows = ["path,label", "images/ok0.png,0", "images/bad0.png,1", f"images/x.png,{value}"]
    (root / "bolt" / "labels.csv").write_text("\n".join(rows) + "\n")
    message = _error(tmp_path, root, layout=CSV)
    assert "line 4" in message and f"label {value!r} is not 0 or 1" in message


def test_bad_csv_rows_and_partial_masks_are_refused(tmp_path):
    root = make_csv(tmp_path / "d", categories=("bolt",), masks=False, rows=["file,target", "a.png,1"])
    assert "header must be path,label" in _error(tmp_path, root, layout=CSV)
    root = make_csv(tmp_path / "e", categories=("bolt",), masks=False,
                    rows=["path,label", "images/ok0.png,0", "images/missing.png,1"])
    assert "does not exist" in _error(tmp_path, root, layout=CSV)
    root = make_folders(tmp_path / "f")
    (root / "bolt" / "masks" / "crack" / "d1_mask.png").unlink()
    assert "has no mask while" in _error(tmp_path, root)
    root = make_folders(tmp_path / "g")
    _mask(root / "bolt" / "masks" / "crack" / "d0_mask.png", size=40)
    assert "masks must have their image's size" in _error(tmp_path, root)


@pytest.mark.parametrize("masks", [True, False])
def test_job_skips_pixel_metrics_without_masks(tmp_path, tmp_paths, masks):
    root = make_folders(tmp_path / "d", masks=masks)
    cfg = compose_cfg(["profile=smoke", "data=folder", f"data.root={root}",
                       "trainer.epochs=1"])
    record = run(cfg, tmp_path / "run")
    assert record["status"] == "completed"
    metrics = record["metrics"]
    assert set(metrics["per_class"]) == {"bolt", "cloth"}
    expected = {"image_auroc", "pixel_auroc"} if masks else {"image_auroc"}
    for values in [metrics["mean"], *metrics["per_class"].values()]:
        assert set(values) == expected
        assert not math.isnan(values["image_auroc"])
    assert ("note" in metrics) is not masks
    if not masks:
        assert "pixel_auroc skipped" in metrics["note"] and "no ground-truth masks" in metrics["note"]
