"""MVTec 3D-AD reader (RGB only): rgb/ images and gt/ masks inside each sample folder, xyz/ ignored."""

from __future__ import annotations

import pytest

from data.errors import DatasetError
from data.mvtec3d import MVTec3DDataset
from data.reader import found_counts
from tests.benchmark_fixtures import make_mvtec3d

# the fixtures are tiny: their counts differ from every release's (the count tests check the warning)
pytestmark = pytest.mark.filterwarnings("ignore::data.reader.CountMismatchWarning")


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "mvtec_3d_anomaly_detection"
    return path, make_mvtec3d(path)


def test_rgb_images_gt_masks_and_no_point_clouds(root):
    path, counts = root
    train, test = MVTec3DDataset(path, "train", image_size=32), MVTec3DDataset(path, "test", image_size=32)
    assert found_counts(train.samples) == {"bagel": (3, 0)} and found_counts(test.samples) == {"bagel": (1, 2)}
    assert all("/rgb/" in s.path for s in train.samples + test.samples)
    assert all(s.mask_path is None or "/gt/" in s.mask_path for s in test.samples)
    files = train.files() + test.files()
    assert not any("/xyz/" in f or "validation" in f for f in files)
    assert {s.defect for s in test.samples} == {"good", "crack", "hole"}
    assert all(test[i]["mask"].sum() > 0 for i, s in enumerate(test.samples) if s.label)
    assert MVTec3DDataset(path, "test", categories=["bagel"]).categories == ["bagel"]


def test_bad_layouts_are_one_line_errors(root):
    path, _ = root
    (path / "bagel" / "test" / "crack" / "gt" / "000.png").unlink()
    with pytest.raises(DatasetError, match="missing mask for defective image .*crack/rgb/000.png"):
        MVTec3DDataset(path, "test")
    for f in (path / "bagel" / "train" / "good" / "rgb").iterdir():
        f.unlink()
    (path / "bagel" / "train" / "good" / "rgb").rmdir()
    with pytest.raises(DatasetError, match="missing folder .*train/good/rgb"):
        MVTec3DDataset(path, "train")


def test_counts_other_than_the_release_warn_naming_both_or_fail_when_strict(root, monkeypatch):
    from tests.benchmark_fixtures import check_release_counts

    check_release_counts(MVTec3DDataset, *root, monkeypatch)
