"""MVTec AD layout reader and transforms: unified/separate modes, labels, masks, one-line errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T

from data.errors import DatasetError
from data.mvtec import MVTecDataset, list_categories, scan
from data.transforms import IMAGENET_MEAN, IMAGENET_STD, denormalize, load_image, load_mask

# category -> (number of train images, {test defect: number of images}); grid is grey like MVTec's grid
TREE = {"bottle": (3, {"good": 2, "broken": 2}), "grid": (2, {"good": 1, "bent": 1, "glue": 1})}


def _image(path: Path, size=(40, 40), mode="RGB", value=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)


def _mask(path: Path, size=(40, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((size[1], size[0]), np.uint8)
    mask[10:20, 5:25] = 255
    Image.fromarray(mask).save(path)


def make_tree(root: Path) -> Path:
    for category, (n_train, test) in TREE.items():
        mode = "L" if category == "grid" else "RGB"
        for i in range(n_train):
            _image(root / category / "train" / "good" / f"{i:03d}.png", mode=mode, value=i)
        for defect, n in test.items():
            for i in range(n):
                _image(root / category / "test" / defect / f"{i:03d}.png", mode=mode, value=100 + i)
                if defect != "good":
                    _mask(root / category / "ground_truth" / defect / f"{i:03d}_mask.png")
    (root / "license.txt").write_text("not a category")
    (root / "notes").mkdir()  # a folder without train/ is not a category
    return root


@pytest.fixture
def tree(tmp_path) -> Path:
    return make_tree(tmp_path / "mvtec")


def test_unified_and_separate_modes(tree):
    assert list_categories(tree) == ["bottle", "grid"]
    train = MVTecDataset(tree, "train", image_size=32)
    test = MVTecDataset(tree, "test", image_size=32)
    assert train.categories == ["bottle", "grid"] and len(train) == 5
    assert all(s.label == 0 and s.mask_path is None for s in train.samples)
    assert len(test) == 7 and sum(s.label for s in test.samples) == 4
    assert [(s.category, s.defect) for s in test.samples] == sorted(
        (s.category, s.defect) for s in test.samples
    )

    separate = MVTecDataset(tree, "test", categories=["grid"], image_size=32)
    assert separate.categories == ["grid"] and len(separate) == 3
    assert {s.defect: s.label for s in separate.samples} == {"bent": 1, "glue": 1, "good": 0}
    assert scan(tree, None, "test") == scan(tree, None, "test")  # deterministic


def test_items_have_shapes_labels_and_binary_masks(tree):
    dataset = MVTecDataset(tree, "test", image_size=32)
    for item, sample in zip(dataset, dataset.samples, strict=True):
        assert item["image"].shape == (3, 32, 32) and item["image"].dtype == torch.float32
        assert item["mask"].shape == (1, 32, 32)
        assert set(item["mask"].unique().tolist()) <= {0.0, 1.0}
        assert item["label"] == sample.label and isinstance(item["label"], int)
        assert bool(item["mask"].any()) == bool(sample.label)
        assert item["category"] == sample.category and item["path"] == sample.path


def test_transforms_match_the_official_pipeline(tree):
    path = tree / "bottle" / "train" / "good" / "000.png"
    official = T.Compose(
        [
            T.Resize([32, 32], T.InterpolationMode.BILINEAR),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    assert torch.equal(load_image(path, 32), official(Image.open(path).convert("RGB")))
    grey = load_image(tree / "grid" / "train" / "good" / "000.png", 32)
    assert grey.shape == (3, 32, 32)
    restored = denormalize(load_image(path, 40))  # no resize at the native size: exact round trip
    assert restored.shape == (40, 40, 3)
    assert np.allclose(restored, np.asarray(Image.open(path)) / 255.0, atol=1e-5)
    mask = load_mask(tree / "bottle" / "ground_truth" / "broken" / "000_mask.png", 40)
    assert mask.sum() == 200 and mask[0, 10:20, 5:25].all()


def _error(root, categories=None, split="test") -> str:
    with pytest.raises(DatasetError) as error:
        scan(root, categories, split)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_missing_root_and_folders_are_named(tree):
    assert str(tree / "nowhere") in _error(tree / "nowhere")
    (tree / "grid" / "test").rename(tree / "grid" / "test_old")
    assert str(tree / "grid" / "test") in _error(tree)
    for path in (tree / "bottle" / "train" / "good").iterdir():
        path.unlink()
    assert str(tree / "bottle" / "train" / "good") in _error(tree, split="train")
    (tree / "bottle" / "train" / "good").rmdir()
    assert str(tree / "bottle" / "train" / "good") in _error(tree, split="train")


def test_defect_without_mask_is_named(tree):
    mask = tree / "bottle" / "ground_truth" / "broken" / "001_mask.png"
    mask.unlink()
    message = _error(tree)
    assert str(mask) in message and str(tree / "bottle" / "test" / "broken" / "001.png") in message


def test_mask_of_wrong_size_is_named(tree):
    mask = tree / "grid" / "ground_truth" / "glue" / "000_mask.png"
    _mask(mask, size=(40, 30))
    message = _error(tree, ["grid"])
    assert str(mask) in message and "40x30" in message and "40x40" in message
    assert len(scan(tree, ["bottle"], "test")) == 4  # the other category is still fine


def test_unknown_category_lists_the_known_ones(tree):
    message = _error(tree, ["bottle", "carpet"])
    assert "'carpet'" in message and "bottle, grid" in message


def test_16_bit_greyscale_images_and_masks_read_as_their_values(tmp_path):
    """A 16-bit PNG at half scale must read as mid grey (PIL's convert("RGB") clips it to white)."""
    values = np.full((16, 16), 32768, np.uint16)
    values[:, :8] = 16384  # left half a quarter grey
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode in ("I;16", "I")  # really a 16-bit file
    grey = denormalize(load_image(path, 16))
    assert np.allclose(grey[:, 8:], 128 / 255, atol=1e-5) and np.allclose(grey[:, :8], 64 / 255, atol=1e-5)
    mask16 = np.zeros((16, 16), np.uint16)
    mask16[2:4, 2:5] = 1  # a low 16-bit value is still "anomalous"
    Image.fromarray(mask16).save(tmp_path / "mask16.png")
    assert load_mask(tmp_path / "mask16.png", 16).sum() == 6


def test_verify_names_a_truncated_or_empty_file_in_one_line(tree):
    test = MVTecDataset(tree, "test", image_size=32)
    digests = test.verify()
    assert set(digests) == set(test.files()) and len(test.files()) == 7 + 4  # images + masks
    assert all(len(d) == 64 for d in digests.values())
    broken = Path(test.samples[3].path)
    broken.write_bytes(broken.read_bytes()[:60])  # header intact, pixels cut off: scan still passes
    MVTecDataset(tree, "test", image_size=32)
    with pytest.raises(DatasetError) as error:
        MVTecDataset(tree, "test", image_size=32).verify()
    assert str(broken) in str(error.value) and "\n" not in str(error.value)
    empty = tree / "grid" / "train" / "good" / "001.png"
    empty.write_bytes(b"")  # a zero-byte training image: scan reads no train header
    train = MVTecDataset(tree, "train", image_size=32)
    with pytest.raises(DatasetError, match=f"unreadable image {empty} \\(empty file\\)"):
        train.verify()
