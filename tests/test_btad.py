"""BTAD reader: classes 01 02 03, ok/ko folders, .bmp/.png masks by class, all-zero ko masks."""

from __future__ import annotations

import pytest
import torch

from data import btad
from data.btad import BTADDataset
from data.errors import DatasetError
from data.reader import found_counts
from tests.benchmark_fixtures import make_btad

# the fixtures are tiny: their counts differ from every release's (the count tests check the warning)
pytestmark = pytest.mark.filterwarnings("ignore::data.reader.CountMismatchWarning")


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "BTech_Dataset_transformed"
    return path, make_btad(path)


def test_layout_counts_and_mask_extensions(root):
    path, counts = root
    train, test = BTADDataset(path, "train", image_size=32), BTADDataset(path, "test", image_size=32)
    assert train.categories == test.categories == list(btad.CATEGORIES)
    assert found_counts(test.samples) == {c: v["test"] for c, v in counts.items()}
    assert found_counts(train.samples) == {c: v["train"] for c, v in counts.items()}
    masks = {s.category: s.mask_path.rsplit(".", 1)[1] for s in test.samples if s.label}
    assert masks == {"01": "png", "02": "png", "03": "bmp"}
    images = {s.category: s.path.rsplit(".", 1)[1] for s in test.samples}
    assert images == {"01": "bmp", "02": "png", "03": "bmp"}
    assert all(s.defect == ("ko" if s.label else "ok") for s in test.samples)
    assert "Thumbs.db" not in " ".join(test.files())


def test_an_all_zero_ko_mask_keeps_the_folder_label(root):
    test = BTADDataset(root[0], "test", categories=["03"], image_size=32)
    assert test.categories == ["03"]
    empty = next(i for i, s in enumerate(test.samples) if s.path.endswith("ko/0001.bmp"))
    item = test[empty]
    assert item["label"] == 1 and torch.count_nonzero(item["mask"]) == 0


def test_bad_layouts_are_one_line_errors(root):
    path, _ = root
    (path / "02" / "ground_truth" / "ko" / "0000.png").unlink()
    with pytest.raises(DatasetError, match="missing mask for defective image .*02/test/ko/0000.png"):
        BTADDataset(path, "test")
    with pytest.raises(DatasetError, match="unknown BTAD category '04'"):
        BTADDataset(path, "train", categories=["04"])
    for f in (path / "01" / "train" / "ok").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="no training images in .*01/train/ok"):
        BTADDataset(path, "train")


def test_counts_other_than_the_release_warn_naming_both_or_fail_when_strict(root, monkeypatch):
    from tests.benchmark_fixtures import check_release_counts

    check_release_counts(BTADDataset, *root, monkeypatch)
