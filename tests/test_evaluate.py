"""Tests of bench.evaluate: exact streamed metrics, undefined metrics recorded as null with a reason."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from PIL import Image

from bench.evaluate import evaluate, record_values
from metrics import class_metrics, resolve_metrics
from tests.test_metrics import blobs

SIZE = 32


class _Sample:
    def __init__(self, category):
        self.category = category


class _Classes(torch.utils.data.Dataset):
    """Class ``a``: normal and anomalous images; ``b``: anomalous images whose masks are all zero;
    ``c``: normal images only."""

    has_masks = True

    def __init__(self):
        rng = np.random.default_rng(0)
        self.items = []
        for category, n, anomalous in (("a", 13, True), ("b", 6, True), ("c", 5, False)):
            masks = blobs(rng, n, SIZE, SIZE, p_anomalous=0.6) if category == "a" else np.zeros((n, SIZE, SIZE), bool)
            for i in range(n):
                label = int(masks[i].any()) if category == "a" else int(anomalous and i % 2 == 0)
                image = rng.standard_normal((3, SIZE, SIZE)).astype(np.float32)
                image[0][masks[i]] += 2.0
                self.items.append((category, image, masks[i], label))
        self.samples = [_Sample(c) for c, *_ in self.items]
        self.categories = ["a", "b", "c"]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        category, image, mask, label = self.items[index]
        return {"image": torch.from_numpy(image), "mask": torch.from_numpy(mask[None].astype(np.float32)),
                "label": label, "category": category}


class _Blur(torch.nn.Module):
    def target(self, images):
        return images[:, :1]

    def reconstruct(self, target):
        return torch.zeros_like(target)

    def anomaly_map(self, target, rec, size):
        return F.avg_pool2d(target - rec, 3, stride=1, padding=1)

    def image_scores(self, target, rec, amap):
        return None  # the suite's image score (eval.score of the pooled map)


def _cfg(**kw):
    return OmegaConf.create({"metrics": "all", "pool_size": 4, "score": "max", "save_maps": 0, "batch_size": 4,
                             "normal_pixel_budget": None, "precision": "fp32", **kw})


def _class_a_by_hand(data):
    """Class a's indices, labels, image scores (max of the 4x4-pooled map), masks and _Blur's maps,
    computed from the data without evaluate()."""
    idx = [i for i, s in enumerate(data.samples) if s.category == "a"]
    images = torch.stack([data[i]["image"] for i in idx])
    maps = F.avg_pool2d(images[:, :1], 3, stride=1, padding=1)[:, 0].numpy()
    masks = np.stack([data.items[i][2] for i in idx])
    labels = np.array([data.items[i][3] for i in idx])
    scores = F.avg_pool2d(torch.from_numpy(maps)[:, None], 4, stride=1).amax(dim=(1, 2, 3)).numpy()
    return idx, labels, scores, masks, maps


def test_streamed_metrics_are_exact_and_undefined_ones_are_null(tmp_path):
    data = _Classes()
    result, _ = evaluate(_Blur(), data, _cfg(), device=torch.device("cpu"))
    text = json.dumps(result, allow_nan=False)  # never NaN in the record
    assert json.loads(text) == result
    # class a, by hand from the gathered arrays
    idx, labels, scores, masks, maps = _class_a_by_hand(data)
    want = class_metrics("all", labels, scores, masks, maps)
    for name, value in want.items():
        assert result["per_class"]["a"][name] == pytest.approx(value, abs=1e-12), name
    # b: anomalous images with all-zero masks -> pixel metrics null, with the reason
    b, why_b = result["per_class"]["b"], result["undefined"]["b"]
    assert all(b[m] is None for m in ("pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro"))
    assert b["image_auroc"] is not None and "image_auroc" not in why_b
    assert set(why_b) == {"pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro"}
    assert "3 anomalous images are all zero" in why_b["pixel_ap"]
    # c: only normal images -> every metric null
    assert all(v is None for v in result["per_class"]["c"].values())
    assert result["undefined"]["c"]["image_auroc"] == "all 5 test images are normal"
    assert "no anomalous test image" in result["undefined"]["c"]["pixel_auroc"]
    assert "a" not in result["undefined"]
    # the mean is over the classes where a metric is defined
    for name in ("pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro"):
        assert result["mean"][name] == result["per_class"]["a"][name]
    per = result["per_class"]
    assert result["mean"]["image_auroc"] == pytest.approx((per["a"]["image_auroc"] + per["b"]["image_auroc"]) / 2)


def test_saved_examples_anomalous_first(tmp_path):
    data = _Classes()
    evaluate(_Blur(), data, _cfg(save_maps=4, metrics=["pixel_auroc"]), device=torch.device("cpu"), run_dir=tmp_path)
    labels = [lab for c, _, _, lab in data.items if c == "a"]
    order = [i for i, v in enumerate(labels) if v] + [i for i, v in enumerate(labels) if not v]
    assert sorted(p.name for p in (tmp_path / "maps" / "a").iterdir()) == sorted(
        f"{i:03d}.{ext}" for i in order[:4] for ext in ("npz", "png"))
    kept = np.load(tmp_path / "maps" / "a" / f"{order[0]:03d}.npz")
    assert kept["mask"].shape == (SIZE, SIZE) and kept["mask"].any()
    # beside each array, its picture: the map over the image at the image's size
    with Image.open(tmp_path / "maps" / "a" / f"{order[0]:03d}.png") as picture:
        assert picture.size == (SIZE, SIZE) and picture.mode == "RGB"


def test_record_values():
    per_class = {"x": {"m": 0.5, "n": float("nan")}, "y": {"m": float("nan"), "n": float("nan")}}
    out = record_values(per_class, {"x": {"n": "why n"}, "y": {"m": "why m", "n": "why n"}})
    assert out == {"mean": {"m": 0.5, "n": None},
                   "per_class": {"x": {"m": 0.5, "n": None}, "y": {"m": None, "n": None}},
                   "undefined": {"x": {"n": "why n"}, "y": {"m": "why m", "n": "why n"}}}
    assert not any(isinstance(v, float) and math.isnan(v) for v in out["mean"].values())


def test_subset_and_sample_metrics_see_the_class_maps():
    """Metrics over subsets of the images (MVTec LOCO) get the class's maps before they are reordered."""
    from metrics.subset_metrics import subset_metrics

    data = _Classes()
    data.subsets = [("even",) if i % 2 == 0 else ("odd",) for i in range(len(data))]
    data.groups = [f"s{i // 2}" for i in range(len(data))]
    result, _ = evaluate(_Blur(), data, _cfg(), device=torch.device("cpu"))
    idx, labels, scores, masks, maps = _class_a_by_hand(data)
    want = subset_metrics(data, idx, resolve_metrics("all"), labels, scores, masks, maps)
    assert len(want) == 3 + 7 + 7  # sample_image_*, even_*, odd_*
    for name, value in want.items():
        got = result["per_class"]["a"][name]
        assert (got is None and math.isnan(value)) or got == pytest.approx(value, abs=1e-12), name
    assert any(k.startswith("even_pixel_") for k in result["per_class"]["a"])
    assert any(k.startswith("sample_image_") for k in result["per_class"]["a"])
    json.dumps(result, allow_nan=False)
