"""Real-IAD reader on a miniature release: JSON splits, labels by anomaly_class, views, samples, counts."""

from __future__ import annotations

import json

import numpy as np
import pytest

from data import realiad
from data.errors import DatasetError
from data.reader import CountMismatchWarning, found_counts
from data.realiad import RealIADDataset
from metrics.subset_metrics import sample_level, subset_metrics
from tests.benchmark_fixtures import make_realiad

# the fixtures are tiny: their counts differ from every release's (the count tests check the warning)
pytestmark = pytest.mark.filterwarnings("ignore::data.reader.CountMismatchWarning")


@pytest.fixture
def root(tmp_path):
    path = tmp_path / "Real-IAD"
    return path, make_realiad(path)


def test_unified_reads_every_class_json_and_labels_by_anomaly_class(root):
    path, counts = root
    train = RealIADDataset(path, "train", resolution=256, image_size=32)
    test = RealIADDataset(path, "test", resolution=256, image_size=32)
    assert train.categories == test.categories == ["audiojack", "mint"]
    assert found_counts(train.samples) == {c: v["train"] for c, v in counts.items()}
    assert found_counts(test.samples) == {c: v["test"] for c, v in counts.items()}
    # three views of the defective sample lie under NG/ but their anomaly_class is OK: normal
    under_ng = [s for s in test.samples if "/NG/" in s.path]
    assert sum(s.label for s in under_ng) == 4 and len(under_ng) == 10
    assert all(s.label == (s.defect == "HS") for s in test.samples)
    assert all((s.mask_path is not None) == bool(s.label) for s in test.samples)
    assert all(s.mask_path is None or s.mask_path.endswith(".png") for s in test.samples)
    assert train.groups is None and len(test.groups) == len(test)
    assert sorted(set(test.groups)) == ["audiojack/audiojack_0002_NG", "audiojack/audiojack_0003_OK",
                                        "mint/mint_0002_NG", "mint/mint_0003_OK"]


def test_separate_mode_views_and_single_view_split(root):
    path, _ = root
    one = RealIADDataset(path, "test", categories=["mint"], resolution=256, image_size=32)
    assert one.categories == ["mint"] and len(one) == 10
    c1 = RealIADDataset(path, "test", resolution=256, views=["C1", "C3"], image_size=32)
    assert {s.path.split("_")[-2] for s in c1.samples} == {"C1", "C3"} and len(c1) == 8
    sv = RealIADDataset(path, "test", resolution=256, json_split="realiad_jsons_sv", image_size=32)
    assert len(sv) == 4 and {s.path.split("_")[-2] for s in sv.samples} == {"C1"}


def test_the_nested_json_folder_of_the_zip_is_found(tmp_path):
    path = tmp_path / "Real-IAD"
    make_realiad(path, resolution="512", nested=True)
    assert len(RealIADDataset(path, "train", resolution=512, image_size=32)) == 10


def test_mask_sits_beside_its_image_and_items_load(root):
    test = RealIADDataset(root[0], "test", categories=["audiojack"], resolution=256, image_size=32)
    i = [s.label for s in test.samples].index(1)
    item = test[i]
    assert item["image"].shape == (3, 32, 32) and item["mask"].sum() > 0
    assert test.samples[i].mask_path.rsplit(".", 1)[0] == test.samples[i].path.rsplit(".", 1)[0]


def test_sample_level_metrics_take_a_sample_as_anomalous_if_any_view_is():
    labels, scores = sample_level(["a", "a", "b", "b", "c"], np.array([0, 1, 0, 0, 0]),
                                  np.array([0.1, 0.2, 0.9, 0.3, 0.5]))
    assert labels.tolist() == [1, 0, 0] and scores.tolist() == [0.2, 0.9, 0.5]


def test_evaluation_adds_sample_metrics_for_grouped_datasets(root):
    test = RealIADDataset(root[0], "test", categories=["audiojack"], resolution=256, image_size=32)
    idx = list(range(len(test)))
    labels = np.array([s.label for s in test.samples])
    scores = labels * 0.5 + np.linspace(0, 0.1, len(labels))  # every anomalous view above every normal one
    scores[[i for i, s in enumerate(test.samples) if s.label == 0 and "/NG/" in s.path][0]] = 1.0
    extra = subset_metrics(test, idx, ["image_auroc", "pixel_auroc"], labels, scores, None, None)
    assert set(extra) == {"sample_image_auroc"}  # no pixel metrics per sample
    assert extra["sample_image_auroc"] == 1.0  # the anomalous sample's best view is its 1.0 one


def test_release_totals_are_compared_when_all_classes_and_views_are_read(root, monkeypatch):
    path, _ = root
    monkeypatch.setattr(realiad, "CATEGORIES", ("audiojack", "mint"))
    with pytest.warns(CountMismatchWarning, match=r"realiad_jsons test: found 16 normal \+ 4 anomalous images in 2 "
                                                  r"classes, the release has 63256 \+ 51329"):
        RealIADDataset(path, "test", resolution=256)
    monkeypatch.setitem(realiad.OFFICIAL_TOTALS, "realiad_jsons", {"test": (16, 5)})
    with pytest.warns(CountMismatchWarning, match=r"found 16 normal \+ 4 anomalous .* release has 16 \+ 5"):
        RealIADDataset(path, "test", resolution=256)
    with pytest.raises(DatasetError, match="found 16 normal"):
        RealIADDataset(path, "test", resolution=256, strict_counts=True)
    RealIADDataset(path, "test", resolution=256, views=["C1"], strict_counts=True)  # a subset: not compared


def test_bad_layouts_are_one_line_errors(root, tmp_path):
    path, _ = root
    with pytest.raises(DatasetError, match="missing Real-IAD image folder .*realiad_1024"):
        RealIADDataset(path, "train")
    with pytest.raises(DatasetError, match="data.resolution=300"):
        RealIADDataset(path, "train", resolution=300)
    with pytest.raises(DatasetError, match="data.views"):
        RealIADDataset(path, "train", resolution=256, views=["C7"])
    with pytest.raises(DatasetError, match="missing Real-IAD split folder .*realiad_jsons_fuiad_0.1"):
        RealIADDataset(path, "train", resolution=256, json_split="realiad_jsons_fuiad_0.1")
    with pytest.raises(DatasetError, match="unknown Real-IAD category 'pcb'"):
        RealIADDataset(path, "train", resolution=256, categories=["pcb"])
    split = path / "realiad_jsons" / "mint.json"
    info = json.loads(split.read_text())
    next(r for r in info["test"] if r["anomaly_class"] == "HS")["mask_path"] = None
    split.write_text(json.dumps(info))
    with pytest.raises(DatasetError, match="anomalous record .* \\(anomaly_class HS\\) has no mask_path"):
        RealIADDataset(path, "test", resolution=256)
    split.write_text("{not json")
    with pytest.raises(DatasetError, match="unreadable Real-IAD split file"):
        RealIADDataset(path, "test", resolution=256)
    next((path / "realiad_256" / "audiojack" / "OK" / "S0001").iterdir()).unlink()
    with pytest.raises(DatasetError, match="missing Real-IAD image"):
        RealIADDataset(path, "train", resolution=256, categories=["audiojack"])


@pytest.mark.slow
def test_ablation_smoke_sweep_runs_on_realiad_with_sample_metrics_and_renders(root, tmp_path):
    from tests.benchmark_fixtures import ablation_smoke_sweep

    records, tables = ablation_smoke_sweep(tmp_path, ["data=realiad", f"data.root={root[0]}", "data.resolution=256",
                                                      "data.views=[C1,C2]"])  # two views per sample: seconds
    assert len(records) == 2 and all(r["status"] == "completed" for r in records)
    for record in records:
        per_class = record["metrics"]["per_class"]
        assert sorted(per_class) == ["audiojack", "mint"]
        assert all({"image_auroc", "pixel_auroc", "sample_image_auroc"} <= set(m) for m in per_class.values())
    assert "Table S2" in tables and "Dataset: realiad" in tables and tables.count("(n=1)") >= 4
