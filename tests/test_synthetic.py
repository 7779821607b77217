"""The offline generator: deterministic, MVTec-readable, exact masks on visible defects, reused once made."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf
from PIL import Image

from data import synthetic
from data.errors import DatasetError
from data.mvtec import MVTecDataset, list_categories, scan

CONF = Path(__file__).resolve().parents[1] / "conf" / "data" / "synthetic.yaml"
# the generator's settings live in the config only; tests shrink the counts
GENERATOR = {k: v for k, v in OmegaConf.to_container(OmegaConf.load(CONF).generator).items() if k != "seed"}
SMALL = {**GENERATOR, "image_size": 64, "n_train": 2, "n_test_good": 1, "n_test_defect": 1}


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
    assert categories == list(synthetic.CATEGORIES) and len(categories) >= 10
    assert len(set(synthetic.TEXTURES) & set(categories)) >= 5
    assert set(synthetic.PROCEDURAL_TEXTURES) <= set(categories)
    assert len(set(synthetic.OBJECTS) & set(categories)) >= 5
    assert {"colour", "missing", "scratch", "stain"} <= set(synthetic.DEFECTS)

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

    dataset = MVTecDataset(root, "test", categories=["gravel"], image_size=64)
    for item in dataset:
        assert item["image"].shape == (3, 64, 64) and item["mask"].shape == (1, 64, 64)
        assert bool(item["mask"].any()) == bool(item["label"])


@pytest.mark.parametrize("profile", ["default", "demo"])
def test_configured_test_split_is_large_enough(profile):
    """Enough to tell ablations apart: >= 60 test images per category, >= 30 anomalous, >= 3 defect types."""
    generator = OmegaConf.load(CONF).generator
    if profile != "default":  # the profile's scaling of the generator (conf/data/generator/<profile>.yaml)
        generator = OmegaConf.merge(generator, OmegaConf.load(CONF.parent / "generator" / f"{profile}.yaml"))
    anomalous = generator.n_test_defect * len(synthetic.DEFECTS)
    assert len(synthetic.CATEGORIES) >= 10 and len(synthetic.DEFECTS) >= 3
    assert anomalous >= 30 and generator.n_test_good + anomalous >= 60
    assert generator.n_train >= 20


def _defects(category, kind, n=4, size=96, **ranges):
    ranges = {"size_range": GENERATOR["defect_size"], "strength_range": GENERATOR["defect_strength"], **ranges}
    for i in range(n):
        rng = np.random.default_rng([7, synthetic.DEFECTS.index(kind), i])
        image = synthetic.normal_image(category, size, rng, jitter=0.01, brightness=0.05)
        yield image, *synthetic.apply_defect(image, kind, rng, category=category, **ranges)


@pytest.mark.parametrize("category", synthetic.CATEGORIES)
def test_defect_changes_exactly_its_mask(category):
    for kind in synthetic.DEFECTS:
        for image, defective, mask in _defects(category, kind):
            assert defective.shape == image.shape and defective.dtype == np.uint8
            assert mask.shape == image.shape[:2] and mask.dtype == bool
            changed = (defective != image).any(axis=2)
            assert np.array_equal(changed, mask), f"{kind}: mask is not the set of changed pixels"
            assert mask.sum() >= 6 and mask.mean() <= 0.25, f"{kind}: mask covers {mask.mean():.3f}"


@pytest.mark.parametrize("kind", synthetic.DEFECTS)
def test_defect_size_and_strength_follow_their_ranges(kind):
    """Small/faint and large/strong settings give visibly different defects (MVTec-like spread)."""
    def stats(size, strength):
        areas, changes = [], []
        for category in ("brick", "coffee", "wood", "retina"):
            for image, defective, mask in _defects(category, kind, n=3, size=128, size_range=[size, size],
                                                   strength_range=[strength, strength]):
                areas.append(mask.mean())
                diff = np.abs(defective[mask].astype(int) - image[mask].astype(int)).max(axis=1)
                changes.append(diff.mean())
        return np.mean(areas), np.mean(changes)

    small_area, faint = stats(0.02, 0.2)
    large_area, strong = stats(0.1, 0.9)
    assert small_area < large_area
    assert faint < strong
    if kind != "scratch":  # a scratch's width is not its size: it is always thin
        assert small_area < 0.01
    if kind != "missing":  # a missing piece is small but never faint: a hole shows the backdrop
        assert faint < min(50, 0.6 * strong)  # low contrast, like MVTec's faint stains and colour changes


def test_normal_images_vary_but_share_a_distribution():
    rng = np.random.default_rng(0)
    for category in synthetic.CATEGORIES:
        a, b = (synthetic.normal_image(category, 64, rng, jitter=0.01, brightness=0.07).astype(float)
                for _ in range(2))
        assert np.abs(a - b).mean() > 1.0
        assert np.abs(a.mean(axis=(0, 1)) - b.mean(axis=(0, 1))).max() < 25


def test_unknown_defect_is_refused():
    image = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="unknown defect"):
        synthetic.apply_defect(image, "crack", np.random.default_rng(0), size_range=[0.1, 0.1],
                               strength_range=[0.5, 0.5])


def test_ensure_generates_once_then_reuses(tmp_path, capsys):
    path = synthetic.ensure(tmp_path, seed=3, **SMALL)
    assert path == tmp_path / synthetic.dataset_name(seed=3, **SMALL)
    assert path.name.startswith("synthetic-v3-s3-64px-2-1-1-")
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


def test_dataset_name_changes_with_every_parameter():
    names = {synthetic.dataset_name(seed=0, **SMALL)}
    for key, value in [("defect_size", [0.03, 0.1]), ("defect_strength", [0.5, 0.9]), ("jitter", 0.02),
                       ("brightness", 0.0), ("n_test_defect", 2)]:
        names.add(synthetic.dataset_name(seed=0, **{**SMALL, key: value}))
    assert len(names) == 6


def test_ensure_needs_exactly_the_configured_parameters(tmp_path):
    with pytest.raises(ValueError, match="expected the parameters"):
        synthetic.ensure(tmp_path, seed=0, **{k: v for k, v in SMALL.items() if k != "jitter"})
    with pytest.raises(ValueError, match="defect_strength"):
        synthetic.generate(tmp_path / "x", seed=0, **{**SMALL, "defect_strength": [0.9, 0.2]})
    assert not (tmp_path / "x").exists()
