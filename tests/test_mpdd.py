"""MPDD reader: the MVTec AD layout, greyscale classes, the same stem in several defect folders."""

from __future__ import annotations

import pytest

from data.errors import DatasetError
from data.mpdd import MPDDDataset
from data.reader import found_counts
from tests.benchmark_fixtures import image, make_mpdd

# the fixtures are tiny: their counts differ from every release's (the count tests check the warning)
pytestmark = pytest.mark.filterwarnings("ignore::data.reader.CountMismatchWarning")


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "MPDD"
    return path, make_mpdd(path)


def test_layout_counts_unified_and_separate(root):
    path, counts = root
    test = MPDDDataset(path, "test", image_size=32)
    assert test.categories == ["bracket_black", "tubes"]
    assert found_counts(test.samples) == {c: v["test"] for c, v in counts.items()}
    assert found_counts(MPDDDataset(path, "train").samples) == {c: v["train"] for c, v in counts.items()}
    assert MPDDDataset(path, "test", categories=["tubes"]).categories == ["tubes"]


def test_repeated_stems_keep_their_own_masks_and_grey_images_become_rgb(root):
    test = MPDDDataset(root[0], "test", categories=["tubes"], image_size=40)
    by_defect = {s.defect: i for i, s in enumerate(test.samples)}
    hole, scratches = test[by_defect["hole"]], test[by_defect["scratches"]]
    assert hole["image"].shape == (3, 40, 40)
    assert hole["mask"][0, :4, :4].all() and not hole["mask"][0, 32:, 30:].any()
    assert scratches["mask"][0, 32:37, 26:32].all() and not scratches["mask"][0, :4, :4].any()


def test_bad_layouts_are_one_line_errors(root):
    path, _ = root
    image(path / "tubes" / "ground_truth" / "hole" / "000_mask.png", 0, "L", size=(10, 10))
    with pytest.raises(DatasetError, match="is 10x10 but its image .* is 48x40"):
        MPDDDataset(path, "test")
    (path / "tubes" / "ground_truth" / "hole" / "000_mask.png").unlink()
    with pytest.raises(DatasetError, match="missing mask for defective image .*tubes/test/hole/000.png"):
        MPDDDataset(path, "test")
    with pytest.raises(DatasetError, match="missing MPDD root"):
        MPDDDataset(path / "nowhere", "test")


def test_counts_other_than_the_release_warn_naming_both_or_fail_when_strict(root, monkeypatch):
    from tests.benchmark_fixtures import check_release_counts

    check_release_counts(MPDDDataset, *root, monkeypatch)
