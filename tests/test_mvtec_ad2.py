"""MVTec AD 2 reader: test_public scored, test_private* never read, validation unused."""

from __future__ import annotations

import pytest

from data.errors import DatasetError
from data.mvtec_ad2 import MVTecAD2Dataset
from data.reader import found_counts
from tests.benchmark_fixtures import make_ad2

# the fixtures are tiny: their counts differ from every release's (the count tests check the warning)
pytestmark = pytest.mark.filterwarnings("ignore::data.reader.CountMismatchWarning")


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "mvtec_ad_2"
    return path, make_ad2(path)


def test_public_test_set_only(root):
    path, counts = root
    train, test = MVTecAD2Dataset(path, "train", image_size=32), MVTecAD2Dataset(path, "test", image_size=32)
    assert found_counts(train.samples) == {"vial": (3, 0)} and found_counts(test.samples) == {"vial": (1, 2)}
    files = " ".join(train.files() + test.files())
    assert "test_private" not in files and "validation" not in files
    assert all(s.mask_path.endswith("_regular_mask.png") for s in test.samples if s.label)
    assert {s.defect for s in test.samples} == {"good", "bad"}  # ground_truth/ is not a defect type
    assert all(test[i]["mask"].sum() > 0 for i, s in enumerate(test.samples) if s.label)


def test_bad_layouts_are_one_line_errors(root):
    path, _ = root
    (path / "vial" / "test_public" / "ground_truth" / "bad" / "001_regular_mask.png").unlink()
    with pytest.raises(DatasetError, match="missing mask for defective image .*bad/001_regular.png"):
        MVTecAD2Dataset(path, "test")
    with pytest.raises(DatasetError, match="unknown MVTec AD 2 category 'can'"):
        MVTecAD2Dataset(path, "test", categories=["can"])


def test_counts_other_than_the_release_warn_naming_both_or_fail_when_strict(root, monkeypatch):
    from tests.benchmark_fixtures import check_release_counts

    check_release_counts(MVTecAD2Dataset, *root, monkeypatch)
