"""VisA reader on a miniature VisA.tar: split CSV, .JPG images, region-id masks, counts, bad layouts."""

from __future__ import annotations

import csv
import warnings

import pytest
import torch

from data import visa
from data.errors import DatasetError
from data.reader import CountMismatchWarning, found_counts
from data.visa import VisADataset
from tests.benchmark_fixtures import image, make_visa

# the fixtures are tiny: their counts differ from every release's (the count tests check the warning)
pytestmark = pytest.mark.filterwarnings("ignore::data.reader.CountMismatchWarning")


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "VisA"
    path.mkdir()
    return path, make_visa(path)


@pytest.fixture
def official(root, monkeypatch):
    """The release's counts replaced by the fixture's, so a complete fixture raises no warning."""
    monkeypatch.setattr(visa, "OFFICIAL", root[1])
    return root[1]


def test_unified_reads_the_split_csv_with_its_labels_and_counts(root, official):
    path, counts = root
    with warnings.catch_warnings():
        warnings.simplefilter("error", CountMismatchWarning)
        train, test = VisADataset(path, "train", image_size=32), VisADataset(path, "test", image_size=32)
    assert train.categories == test.categories == ["candle", "pcb1"]
    assert found_counts(train.samples) == counts["train"] and found_counts(test.samples) == counts["test"]
    assert all(s.path.endswith(".JPG") for s in train.samples + test.samples)
    assert all(("/Anomaly/" in s.path) == bool(s.label) for s in test.samples)
    assert all((s.mask_path is not None) == bool(s.label) for s in test.samples)
    assert not any("Thumbs.db" in f for f in train.files() + test.files())


def test_separate_mode_reads_one_object(root, official):
    test = VisADataset(root[0], "test", categories=["pcb1"], image_size=32)
    assert test.categories == ["pcb1"] and found_counts(test.samples) == {"pcb1": (1, 2)}


def test_region_id_masks_are_binarised_and_greyscale_images_become_rgb(root, official):
    test = VisADataset(root[0], "test", categories=["pcb1"], image_size=40)
    item = test[[s.label for s in test.samples].index(1)]
    assert item["image"].shape == (3, 40, 40)  # pcb1 is greyscale in the fixture
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0}
    # both regions (ids 1 and 2) are anomalous: 8x8 + 10x10 pixels of 48x40, resized to 40x40
    assert 0.05 < item["mask"].mean().item() < 0.15
    normal = test[[s.label for s in test.samples].index(0)]
    assert torch.count_nonzero(normal["mask"]) == 0


def test_counts_other_than_the_release_warn_naming_both_or_fail_when_strict(root):
    path, counts = root
    with pytest.warns(CountMismatchWarning, match=r"pcb1 train: found 3 normal"), \
            pytest.warns(CountMismatchWarning, match=r"candle train: found 4 normal \+ 0 anomalous images, the "
                                                  r"official 1cls split has 900 \+ 0"):
        VisADataset(path, "train", image_size=32)
    with pytest.raises(DatasetError, match="candle train: found 4 normal"):
        VisADataset(path, "train", image_size=32, strict_counts=True)


def test_a_missing_csv_row_is_a_count_mismatch(root, official):
    path, _ = root
    split = path / "split_csv" / "1cls.csv"
    rows = split.read_text().splitlines()
    split.write_text("\n".join(r for r in rows if "candle/Data/Images/Anomaly/001.JPG" not in r) + "\n")
    with pytest.warns(CountMismatchWarning, match=r"candle test: found 2 normal \+ 1 anomalous .* has 2 \+ 2"):
        VisADataset(path, "test", image_size=32)


def test_bad_layouts_are_one_line_errors(root, official, tmp_path):
    path, _ = root
    one_class = (path / "split_csv" / "1cls.csv").read_text()
    (path / "split_csv" / "2cls_highshot.csv").write_text(one_class.replace("pcb1,test,anomaly", "pcb1,train,anomaly"))
    with pytest.raises(DatasetError, match="lists anomalous training images .* a 2-class split"):
        VisADataset(path, "train", split_file="split_csv/2cls_highshot.csv")
    with pytest.raises(DatasetError, match="missing VisA split file .*1cls.csv"):
        VisADataset(tmp_path / "VisA" / "candle", "train")
    with pytest.raises(DatasetError, match="unknown VisA category 'bottle'"):
        VisADataset(path, "train", categories=["bottle"])
    (path / "candle/Data/Masks/Anomaly/000.png").unlink()
    with pytest.raises(DatasetError, match="missing VisA mask .*000.png") as error:
        VisADataset(path, "test")
    assert "\n" not in str(error.value)
    image(path / "candle/Data/Masks/Anomaly/000.png", 0, "L", size=(20, 20))
    with pytest.raises(DatasetError, match="mask .* is 20x20 but its image .* is 48x40"):
        VisADataset(path, "test")
    (path / "candle/Data/Images/Normal/0000.JPG").unlink()
    with pytest.raises(DatasetError, match="missing VisA image .*0000.JPG"):
        VisADataset(path, "train")
    with (path / "split_csv" / "1cls.csv").open("w", newline="") as handle:
        csv.writer(handle).writerow(["object", "split", "label", "image"])
    with pytest.raises(DatasetError, match="columns .* expected object,split,label,image,mask"):
        VisADataset(path, "train")


@pytest.mark.slow
def test_ablation_smoke_sweep_runs_on_visa_and_renders(root, tmp_path):
    from tests.benchmark_fixtures import ablation_smoke_sweep

    records, tables = ablation_smoke_sweep(tmp_path, ["data=visa", f"data.root={root[0]}"])
    assert len(records) == 2 and all(r["status"] == "completed" for r in records)
    assert all(sorted(r["metrics"]["per_class"]) == ["candle", "pcb1"] for r in records)
    assert "Table S2" in tables and "Dataset: visa" in tables and tables.count("(n=1)") >= 4
