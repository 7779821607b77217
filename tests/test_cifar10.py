"""CIFAR-10 many-versus-many on a tiny fake dataset written in the real pickle format."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from data.cifar10 import Cifar10ManyVsMany
from data.errors import DatasetError
from data.transforms import denormalize

NORMAL = [0, 1, 2, 3, 4]


def _colour(cls: int, i: int) -> tuple[int, int, int]:
    return 20 * cls + 5, 200 - 10 * cls, 7 * i


def _batch(path: Path, classes: list[int]) -> None:
    rows, labels = [], []
    for i, cls in enumerate(classes):
        red, green, blue = _colour(cls, i)
        rows.append(np.repeat(np.array([red, green, blue], np.uint8), 1024))  # R, G, B planes of 32x32
        labels.append(cls)
    entry = {b"batch_label": b"fake", b"labels": labels, b"data": np.stack(rows), b"filenames": []}
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)


@pytest.fixture
def cifar(tmp_path) -> Path:
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for b in range(1, 6):
        _batch(folder / f"data_batch_{b}", list(range(10)))  # one image per class per batch
    _batch(folder / "test_batch", list(range(10)) * 2)
    return tmp_path / "cifar10"


def test_train_holds_only_normal_classes(cifar):
    train = Cifar10ManyVsMany(cifar, "train", NORMAL, image_size=16)
    assert len(train) == 25 and set(train.classes.tolist()) == set(NORMAL)
    assert train.categories == ["cifar10"]
    assert all(item["label"] == 0 and not item["mask"].any() for item in train)


def test_test_holds_all_classes_with_labels_and_masks(cifar):
    test = Cifar10ManyVsMany(cifar / "cifar-10-batches-py", "test", [1, 3, 5, 7, 9], image_size=16)
    assert len(test) == 20
    for i in range(len(test)):
        item = test[i]
        cls = i % 10
        assert item["label"] == int(cls not in (1, 3, 5, 7, 9))
        assert item["image"].shape == (3, 16, 16) and item["mask"].shape == (1, 16, 16)
        assert item["mask"].eq(item["label"]).all() and item["category"] == "cifar10"
        # a flat colour survives the resize: checks the R, G, B plane order of the rows
        expected = np.array(_colour(cls, i)) / 255.0
        assert np.allclose(denormalize(item["image"]), expected, atol=2e-3)


def test_missing_file_is_named(cifar):
    missing = cifar / "cifar-10-batches-py" / "data_batch_3"
    missing.unlink()
    with pytest.raises(DatasetError) as error:
        Cifar10ManyVsMany(cifar, "train", NORMAL)
    assert str(missing) in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(DatasetError, match="test_batch"):
        Cifar10ManyVsMany(cifar.parent / "elsewhere", "test", NORMAL)


def test_bad_normal_classes_are_refused(cifar):
    for classes in ([], [10], list(range(10))):
        with pytest.raises(ValueError, match="normal_classes"):
            Cifar10ManyVsMany(cifar, "train", classes)


class _Payload:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return os.system, (self.command,)


@pytest.mark.parametrize("how", ["os.system", "numpy.load"])
def test_a_batch_file_that_names_a_function_is_refused_and_nothing_runs(cifar, tmp_path, how):
    marker = tmp_path / "ran"
    batch = cifar / "cifar-10-batches-py" / "test_batch"
    if how == "os.system":
        payload = _Payload(f"touch {marker}")
    else:  # a callable outside builtins' containers and numpy's array constructors, harmless or not
        np.save(tmp_path / "x.npy", np.zeros(3))
        payload = type("Load", (), {"__reduce__": lambda self: (np.load, (str(tmp_path / "x.npy"),))})()
    with open(batch, "wb") as f:
        pickle.dump({b"data": payload, b"labels": [0]}, f, protocol=2)
    with pytest.raises(DatasetError) as error:
        Cifar10ManyVsMany(cifar, "test", NORMAL, image_size=16)
    assert str(batch) in str(error.value) and "refused" in str(error.value)
    assert not marker.exists()
