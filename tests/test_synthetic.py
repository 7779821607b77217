"""The offline generator: deterministic, MVTec-readable, exact masks on visible defects, reused once made."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data import synthetic
from data.errors import DatasetError
from data.mvtec import MVTecDataset, list_categories, scan

SMALL = {"image_size": 64, "n_train": 2, "n_test_good": 1, "n_test_defect": 1}


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    a = _files(synthetic.generate(tmp_path / "a", seed=0, **SMALL))
    b = _files(synthetic.generate(tmp_path / "b", seed=0, **SMALL))
    c = _files(synthetic.generate(tmp_path / "c", seed=1, **SMALL))
    assert a and a == b
    assert a.keys() == c.keys()
    assert sum(a[k] != c[k] for k in a) > len(a) // 2


def test_layout_is_mvtec_with_textures_objects_and_defects(tmp_path):
    root = synthetic.generate(tmp_path / "d", seed=0, **SMALL)
    categories = list_categories(root)
    assert categories == list(synthetic.CATEGORIES) and len(categories) >= 4
    assert len(set(synthetic.TEXTURES) & set(categories)) >= 3
    assert len(set(synthetic.OBJECTS) & set(categories)) >= 1
    assert {"scratch", "stain", "patch"} <= set(synthetic.DEFECTS) and len(synthetic.DEFECTS) >= 4
    assert {"blur", "missing"} & set(synthetic.DEFECTS)

    train, test = scan(root, None, "train"), scan(root, None, "test")
    assert len(train) == 2 * len(categories)
    assert len(test) == (1 + len(synthetic.DEFECTS)) * len(categories)
    assert {s.defect for s in test} == {"good", *synthetic.DEFECTS}
    for sample in test:
        with Image.open(sample.path) as image:
            assert image.size == (64, 64) and image.mode == "RGB"
        if sample.label:
            mask = np.asarray(Image.open(sample.mask_path))
            assert mask.shape == (64, 64) and set(np.unique(mask)) == {0, 255}

    dataset = MVTecDataset(root, "test", categories=["gravel"], image_size=32)
    for item in dataset:
        assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)
        assert bool(item["mask"].any()) == bool(item["label"])


@pytest.mark.parametrize("category", synthetic.CATEGORIES)
def test_defect_changes_exactly_its_mask_visibly(category):
    size = 96
    centre = (0.15, 0.85) if category in synthetic.TEXTURES else (0.3, 0.7)
    for d, kind in enumerate(synthetic.DEFECTS):
        for i in range(3):
            rng = np.random.default_rng([7, d, i])
            image = synthetic.normal_image(category, size, rng)
            defective, mask = synthetic.apply_defect(image, kind, rng, exclude=category, centre_range=centre)
            assert defective.shape == image.shape and defective.dtype == np.uint8
            assert mask.shape == (size, size) and mask.dtype == bool
            changed = (defective != image).any(axis=2)
            assert np.array_equal(changed, mask), f"{kind}: mask is not the set of changed pixels"
            # visible: a few percent of the image at least, never most of it, with strong contrast
            assert 0.004 <= mask.mean() <= 0.15, f"{kind}: mask covers {mask.mean():.3f} of the image"
            rows, cols = np.nonzero(mask)
            extent = max(np.ptp(rows), np.ptp(cols)) + 1
            assert 0.08 * size <= extent <= 0.6 * size, f"{kind}: defect extent {extent} px"
            contrast = np.abs(defective[mask].astype(int) - image[mask].astype(int)).max(axis=1).mean()
            assert contrast >= 40, f"{kind}: mean change {contrast:.1f} grey levels is too faint"


def test_normal_images_vary_but_share_a_distribution():
    rng = np.random.default_rng(0)
    for category in synthetic.CATEGORIES:
        a, b = (synthetic.normal_image(category, 64, rng).astype(float) for _ in range(2))
        assert np.abs(a - b).mean() > 1.0
        assert np.abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))).max() < 25


def test_unknown_defect_is_refused():
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="unknown defect"):
        synthetic.apply_defect(image, "crack", np.random.default_rng(0))


def test_ensure_generates_once_then_reuses(tmp_path, capsys):
    path = synthetic.ensure(tmp_path, seed=3, **SMALL)
    assert path == tmp_path / "synthetic-v2-s3-64px-2-1-1"
    assert (path / ".complete").is_file()
    assert "generating" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp dir left behind
    probe = path / "brick" / "train" / "good" / "000.png"
    before = (path.stat().st_mtime_ns, probe.stat().st_mtime_ns)

    assert synthetic.ensure(tmp_path, seed=3, **SMALL) == path
    assert capsys.readouterr().out == ""
    assert (path.stat().st_mtime_ns, probe.stat().st_mtime_ns) == before


def test_ensure_keeps_the_copy_that_won_a_race(tmp_path, monkeypatch):
    target = tmp_path / synthetic.dataset_name(seed=0, **SMALL)
    real_generate = synthetic.generate

    def racing(out_dir, **kwargs):  # another process finishes first while we generate
        real_generate(out_dir, **kwargs)
        shutil.copytree(out_dir, target)
        (target / ".complete").write_text("winner\n")

    monkeypatch.setattr(synthetic, "generate", racing)
    assert synthetic.ensure(tmp_path, seed=0, **SMALL) == target
    assert (target / ".complete").read_text() == "winner\n"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_ensure_refuses_an_unmarked_folder(tmp_path):
    target = tmp_path / synthetic.dataset_name(seed=0, **SMALL)
    target.mkdir()
    with pytest.raises(DatasetError, match="no .complete marker") as error:
        synthetic.ensure(tmp_path, seed=0, **SMALL)
    assert str(target) in str(error.value) and "\n" not in str(error.value)
