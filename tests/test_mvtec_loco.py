"""MVTec LOCO AD reader: per-defect mask folders united, logical/structural subsets, repeated stems."""

from __future__ import annotations

import numpy as np
import pytest

from data.errors import DatasetError
from data.mvtec_loco import MVTecLOCODataset
from data.reader import found_counts
from metrics.subset_metrics import subset_metrics
from tests.benchmark_fixtures import image, make_loco

# the fixtures are tiny: their counts differ from every release's (the count tests check the warning)
pytestmark = pytest.mark.filterwarnings("ignore::data.reader.CountMismatchWarning")


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "mvtec_loco_anomaly_detection"
    return path, make_loco(path)


def test_layout_counts_labels_and_subsets(root):
    path, counts = root
    train, test = MVTecLOCODataset(path, "train", image_size=32), MVTecLOCODataset(path, "test", image_size=32)
    assert train.categories == ["breakfast_box"] and found_counts(train.samples) == {"breakfast_box": (3, 0)}
    assert found_counts(test.samples) == {"breakfast_box": (2, 3)}
    assert not any("validation" in s.path for s in train.samples)
    tags = {(s.defect, s.path.rsplit("/", 1)[1]): t for s, t in zip(test.samples, test.subsets, strict=True)}
    assert tags[("good", "000.png")] == ("logical", "structural")
    assert tags[("logical_anomalies", "000.png")] == ("logical",)
    assert tags[("structural_anomalies", "000.png")] == ("structural",)
    assert "defects_config.json" not in " ".join(test.files())
    assert sum(f.endswith("001.png") and "ground_truth" in f for f in test.files()) == 1
    assert MVTecLOCODataset(path, "test", categories=["breakfast_box"]).categories == ["breakfast_box"]


def test_the_mask_is_the_union_of_the_defect_files(root):
    test = MVTecLOCODataset(root[0], "test", image_size=40)
    i = next(i for i, s in enumerate(test.samples) if s.defect == "logical_anomalies" and s.path.endswith("000.png"))
    mask = test[i]["mask"][0].numpy()
    assert set(np.unique(mask)) == {0.0, 1.0}
    # 000.png (255) covers the top-left corner, 001.png (254) a region near the bottom right
    assert mask[:4, :4].all() and mask[25:30, 27:32].all() and not mask[15:18, 15:18].any()
    j = next(i for i, s in enumerate(test.samples) if s.defect == "structural_anomalies")
    assert test[j]["mask"][0, 10:15, 10:15].all()  # the same stem in another folder keeps its own mask


def test_logical_and_structural_metrics_are_reported_apart(root):
    test = MVTecLOCODataset(root[0], "test", image_size=16)
    labels = np.array([s.label for s in test.samples])
    # logical anomalies scored above the normal images, the structural one below them
    scores = np.array([{"good": 0.5, "logical_anomalies": 0.9, "structural_anomalies": 0.1}[s.defect]
                       for s in test.samples])
    masks = np.stack([test[i]["mask"][0].numpy() > 0.5 for i in range(len(test))])
    maps = masks.astype(np.float32)
    extra = subset_metrics(test, list(range(len(test))), ["image_auroc", "pixel_auroc"], labels, scores, masks, maps)
    assert extra["logical_image_auroc"] == 1.0 and extra["structural_image_auroc"] == 0.0
    assert extra["logical_pixel_auroc"] == 1.0 and extra["structural_pixel_auroc"] == 1.0


def test_bad_layouts_are_one_line_errors(root):
    path, _ = root
    with pytest.raises(DatasetError, match="missing MVTec LOCO AD root"):
        MVTecLOCODataset(path / "nowhere", "train")
    for f in (path / "breakfast_box" / "ground_truth" / "structural_anomalies" / "000").iterdir():
        f.unlink()
    with pytest.raises(DatasetError, match="missing mask for defective image .*structural_anomalies/000.png"):
        MVTecLOCODataset(path, "test")
    image(path / "breakfast_box" / "ground_truth" / "structural_anomalies" / "000" / "000.png", 0, "L", size=(8, 8))
    with pytest.raises(DatasetError, match="is 8x8 but its image"):
        MVTecLOCODataset(path, "test")
    with pytest.raises(DatasetError, match="unknown MVTec LOCO AD category 'pushpins'"):
        MVTecLOCODataset(path, "train", categories=["pushpins"])
    image(path / "breakfast_box" / "ground_truth" / "structural_anomalies" / "000" / "000.png", 0, "L")
    image(path / "breakfast_box" / "test" / "other" / "000.png", 0)
    image(path / "breakfast_box" / "ground_truth" / "other" / "000" / "000.png", 0, "L")
    with pytest.raises(DatasetError, match="unknown MVTec LOCO AD test folder 'other'"):
        MVTecLOCODataset(path, "test")


def test_counts_other_than_the_release_warn_naming_both_or_fail_when_strict(root, monkeypatch):
    from tests.benchmark_fixtures import check_release_counts

    check_release_counts(MVTecLOCODataset, *root, monkeypatch)
