"""Tests of the metrics package: hand-computed values, sklearn parity, and an independent AUPRO reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from metrics import (
    DEFAULT_METRICS,
    METRICS,
    class_metrics,
    image_ap,
    image_auroc,
    image_f1_max,
    mean_metrics,
    pixel_ap,
    pixel_aupro,
    pixel_auroc,
    pixel_f1_max,
    resolve_metrics,
)

ALL = ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro")


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------


def blobs(rng, n, h, w, sigma=2.5, frac=0.06, p_anomalous=0.6):
    """Random blob masks: thresholded smoothed noise, several regions per anomalous image."""
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        if rng.random() < p_anomalous:
            field = ndimage.gaussian_filter(rng.random((h, w)), sigma)
            masks[i] = field > np.quantile(field, 1.0 - frac)
    if not masks.any():
        masks[0, 2:5, 3:7] = True
    return masks


def noisy_maps(rng, masks, signal=1.0, quantize=None):
    maps = (signal * masks + rng.normal(0.0, 0.6, masks.shape)).astype(np.float32)
    if quantize:
        maps = (np.round(maps * quantize) / quantize).astype(np.float32)
    return maps


def reference_aupro(masks, maps, limit=0.3):
    """Straightforward AUPRO: a loop over every distinct score as threshold (descending)."""
    regions = []
    for i in range(masks.shape[0]):
        lab, n = ndimage.label(masks[i], structure=np.ones((3, 3), dtype=int))
        for r in range(1, n + 1):
            regions.append(maps[i][lab == r])
    normal = maps[masks == 0]
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        fpr = np.count_nonzero(normal >= t) / normal.size
        overlaps = [np.count_nonzero(reg >= t) / reg.size for reg in regions]
        fprs.append(fpr)
        pros.append(sum(overlaps) / len(overlaps))
        if fpr > limit:
            break
    area = 0.0
    for k in range(1, len(fprs)):
        x0, x1, y0, y1 = fprs[k - 1], fprs[k], pros[k - 1], pros[k]
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2.0
    return area / limit


def step_case(tie_b1=False):
    """One 9 x 12 image: 100 normal pixels with distinct scores, region A (4 px), region B (4 px).

    Normal pixel k (k = 1..100, by decreasing score) scores 1 - k/200, so including the k highest
    normals gives FPR = k/100. A scores 0.999 (> all normals); B = {b1, b1, b2, b2}.
    """
    mask = np.zeros((9, 12), dtype=bool)
    mask[0:2, 0:2] = True  # region A
    mask[5:7, 6:8] = True  # region B (not 8-adjacent to A)
    amap = np.zeros((9, 12), dtype=np.float64)
    amap[~mask] = 1.0 - np.arange(1, 101) / 200.0
    amap[0:2, 0:2] = 0.999
    normal = lambda k: 1.0 - k / 200.0  # noqa: E731
    b1 = normal(10) if tie_b1 else (normal(10) + normal(11)) / 2.0  # tie with, or just below, the 10th
    b2 = (normal(20) + normal(21)) / 2.0  # just below the 20th normal
    amap[5, 6:8] = b1
    amap[6, 6:8] = b2
    return mask[None], amap[None].astype(np.float32)


# ------------------------------------------------------------------------------------------------
# image metrics
# ------------------------------------------------------------------------------------------------


def test_image_auroc_hand():
    # pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3/4
    assert image_auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # ties count 1/2
    assert image_auroc([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) == pytest.approx((0.5 + 1 + 1 + 1) / 4)


def test_image_auroc_below_half_not_flipped():
    assert image_auroc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == pytest.approx(0.0)
    # 0.5 beats 0.3, loses to 0.9; 0.1 loses to both -> 1/4
    assert image_auroc([0, 0, 1, 1], [0.3, 0.9, 0.5, 0.1]) == pytest.approx(0.25)


def test_image_ap_and_f1_hand():
    labels, scores = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    # thresholds 0.8: TP1 FP0 (P=1, R=.5); 0.4: TP1 FP1; 0.35: TP2 FP1 (P=2/3, R=1); 0.1: TP2 FP2
    # AP = 0.5 * 1 + 0.5 * 2/3 = 5/6
    assert image_ap(labels, scores) == pytest.approx(5 / 6)
    # F1: 2/3, 1/2, 2*(2/3)/(5/3) = 0.8, 2/3 -> max 0.8
    assert image_f1_max(labels, scores) == pytest.approx(0.8)
    # perfect ranking
    assert image_f1_max([0, 1, 1], [0.1, 0.7, 0.9]) == pytest.approx(1.0)
    assert image_ap([0, 1, 1], [0.1, 0.7, 0.9]) == pytest.approx(1.0)


def test_image_single_class_is_nan():
    assert math.isnan(image_auroc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(image_auroc([0, 0], [0.1, 0.2]))
    assert math.isnan(image_ap([0, 0], [0.1, 0.2]))
    assert math.isnan(image_f1_max([0, 0], [0.1, 0.2]))


def test_image_bad_labels_raise():
    with pytest.raises(ValueError):
        image_auroc([0, 2, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError):
        image_auroc([0, 1], [0.1, 0.2, 0.3])


# ------------------------------------------------------------------------------------------------
# pixel AUROC / AP / F1-max
# ------------------------------------------------------------------------------------------------


def test_pixel_hand():
    masks = np.array([[[0, 1], [1, 0]]], dtype=np.uint8)
    maps = np.array([[[0.2, 0.6], [0.3, 0.4]]], dtype=np.float32)
    # pos {.6, .3}, neg {.2, .4}: .6>.2, .6>.4, .3>.2, .3<.4 -> 3/4
    assert pixel_auroc(masks, maps) == pytest.approx(0.75)
    # thresholds .6: P=1 R=.5; .4: P=.5 R=.5; .3: P=2/3 R=1 -> AP = .5 + .5*2/3, F1max = .8
    assert pixel_ap(masks, maps) == pytest.approx(5 / 6)
    assert pixel_f1_max(masks, maps) == pytest.approx(0.8)
    assert pixel_auroc(masks, 1.0 - maps) == pytest.approx(0.25)  # not flipped


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("quantize", [None, 10])
def test_pixel_parity_with_sklearn(seed, quantize):
    rng = np.random.default_rng(seed)
    masks = blobs(rng, 6, 24, 24)
    maps = noisy_maps(rng, masks, signal=0.8, quantize=quantize)
    y, s = masks.ravel(), maps.ravel()
    assert pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(y, s), abs=1e-9)
    assert pixel_ap(masks, maps) == pytest.approx(average_precision_score(y, s), abs=1e-9)
    p, r, _ = precision_recall_curve(y, s)
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
    assert pixel_f1_max(masks, maps) == pytest.approx(f1.max(), abs=1e-9)


def test_pixel_inputs_not_modified_and_shapes():
    rng = np.random.default_rng(3)
    masks = blobs(rng, 3, 16, 16)
    maps = noisy_maps(rng, masks)
    before = maps.copy()
    for name in ("pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro"):
        METRICS[name](masks, maps)
    np.testing.assert_array_equal(maps, before)
    # N x 1 x H x W and 0/1 uint8 masks give the same values
    assert pixel_aupro(masks[:, None].astype(np.uint8), maps[:, None]) == pixel_aupro(masks, maps)
    with pytest.raises(ValueError):
        pixel_auroc(masks, maps[:, :8])
    with pytest.raises(ValueError):
        pixel_auroc(masks.astype(np.uint8) * 255, maps)


def test_pixel_no_anomaly_is_nan():
    masks = np.zeros((2, 8, 8), dtype=bool)
    maps = np.random.default_rng(0).random((2, 8, 8)).astype(np.float32)
    for name in ("pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro"):
        assert math.isnan(METRICS[name](masks, maps)), name


# ------------------------------------------------------------------------------------------------
# AUPRO
# ------------------------------------------------------------------------------------------------


def test_aupro_perfect_map_is_one():
    rng = np.random.default_rng(0)
    masks = blobs(rng, 5, 32, 32)
    maps = np.where(masks, 2.0 + rng.random(masks.shape), rng.random(masks.shape)).astype(np.float32)
    for amap in (maps, masks.astype(np.float32)):  # the binary map is a single tied step
        v = pixel_aupro(masks, amap)
        assert v <= 1.0 and v == pytest.approx(1.0, abs=1e-12)


def test_aupro_region_below_all_normals_is_half():
    # Two regions in one 10 x 10 image. A (2x2) scores 1.0 > every normal pixel (scores in
    # [0.1, 0.9]); B (2x2, not adjacent to A) scores 0.0 < every normal pixel.
    # Curve: (0,0) -> (0, 0.5) [A enters, vertical, zero area] -> normals enter, PRO stays 0.5
    # up to FPR 1, B only enters at FPR = 1. Area on [0, 0.3] = 0.5 * 0.3 -> AUPRO = 0.5 exactly.
    rng = np.random.default_rng(0)
    mask = np.zeros((1, 10, 10), dtype=bool)
    mask[0, 0:2, 0:2] = True
    mask[0, 6:8, 6:8] = True
    maps = rng.uniform(0.1, 0.9, (1, 10, 10)).astype(np.float32)
    maps[0, 0:2, 0:2] = 1.0
    maps[0, 6:8, 6:8] = 0.0
    assert pixel_aupro(mask, maps) == pytest.approx(0.5, abs=1e-6)
    # the same when B is a separate region in another image (regions are per image)
    mask2 = np.zeros((2, 10, 10), dtype=bool)
    maps2 = rng.uniform(0.1, 0.9, (2, 10, 10)).astype(np.float32)
    mask2[0, 0:2, 0:2], maps2[0, 0:2, 0:2] = True, 1.0
    mask2[1, 4:7, 4:7], maps2[1, 4:7, 4:7] = True, 0.0
    assert pixel_aupro(mask2, maps2) == pytest.approx(0.5, abs=1e-6)


def test_aupro_diagonal_touch_is_one_region():
    # 8-connectivity: the diagonally touching pixels (1,1), (2,2) form ONE region, scored above all
    # normals; a separate pixel (6,6) is a second region scored below all normals.
    # 8-conn: PRO = (1 + 0) / 2 = 0.5 on (0, 0.3] -> AUPRO 0.5; 4-conn would give 3 regions -> 2/3.
    mask = np.zeros((1, 8, 8), dtype=bool)
    mask[0, 1, 1] = mask[0, 2, 2] = True
    mask[0, 6, 6] = True
    maps = np.full((1, 8, 8), 0.5, dtype=np.float32)
    maps[0][~mask[0]] = np.linspace(0.2, 0.8, int((~mask[0]).sum()), dtype=np.float32)
    maps[0, 1, 1] = maps[0, 2, 2] = 1.0
    maps[0, 6, 6] = 0.0
    assert pixel_aupro(mask, maps) == pytest.approx(0.5, abs=1e-6)


def test_aupro_steps_at_known_fprs():
    # step_case: PRO = 0.5 on [0, 0.1] (A only), 0.75 on [0.1, 0.2] (b1 pixels enter right after the
    # 10th normal), 1.0 on [0.2, 0.3] (b2 after the 20th).
    # Area = 0.1*0.5 + 0.1*0.75 + 0.1*1.0 = 0.225 -> AUPRO = 0.225 / 0.3 = 0.75
    masks, maps = step_case()
    assert pixel_aupro(masks, maps) == pytest.approx(0.75, abs=1e-6)
    # limit 0.25 (between points at 0.25 exactly): area 0.05 + 0.075 + 0.05 = 0.175 -> 0.7
    assert pixel_aupro(masks, maps, fpr_limit=0.25) == pytest.approx(0.7, abs=1e-6)
    # limit 0.15: area 0.05 + 0.05*0.75 = 0.0875 -> 0.58333
    assert pixel_aupro(masks, maps, fpr_limit=0.15) == pytest.approx(0.0875 / 0.15, abs=1e-6)


def test_aupro_ties_are_one_diagonal_step():
    # As step_case, but b1 equals the 10th normal score: FPR 0.09 -> 0.10 and PRO 0.5 -> 0.75 in one
    # step (diagonal). Area = 0.09*0.5 + 0.01*(0.5+0.75)/2 + 0.1*0.75 + 0.1*1.0 = 0.22625
    masks, maps = step_case(tie_b1=True)
    assert pixel_aupro(masks, maps) == pytest.approx(0.22625 / 0.3, abs=1e-6)


def test_aupro_interpolates_at_limit():
    # 100 normals: 25 high (0.9 > ... ), 10 tied at 0.5 with region B's 4 pixels, 65 low.
    # Region A (4 px) scores 1.0. Curve: (0,0) -> (0,.5) -> (.25,.5) -> tie step to (.35, 1.0).
    # At 0.3 the diagonal is interpolated: PRO = 0.75. Area = .25*.5 + .05*(.5+.75)/2 = 0.15625
    # -> AUPRO = 0.15625 / 0.3
    mask = np.zeros((1, 9, 12), dtype=bool)
    mask[0, 0:2, 0:2] = True
    mask[0, 5:7, 6:8] = True
    normals = np.concatenate([np.linspace(0.9, 0.6, 25), np.full(10, 0.5), np.linspace(0.4, 0.1, 65)])
    maps = np.zeros((1, 9, 12), dtype=np.float32)
    maps[0][~mask[0]] = normals
    maps[0, 0:2, 0:2] = 1.0
    maps[0, 5:7, 6:8] = 0.5
    assert pixel_aupro(mask, maps) == pytest.approx(0.15625 / 0.3, abs=1e-6)
    assert pixel_aupro(mask, maps) == pytest.approx(reference_aupro(mask, maps), abs=1e-9)


def test_aupro_never_above_one_when_curve_hits_limit_exactly():
    # 100 normals; the region is perfectly ranked and the 30th normal gives FPR = 0.3 exactly, with
    # many points on the way (a sloppy normalisation/extrapolation past the limit would exceed 1).
    mask = np.zeros((1, 10, 13), dtype=bool)
    mask[0, 2:7, 3:9] = True  # 30 px region
    maps = np.zeros((1, 10, 13), dtype=np.float32)
    maps[0][~mask[0]] = np.linspace(0.99, 0.0, 100)
    maps[0][mask[0]] = 1.0
    for limit in (0.3, 0.05, 0.299, 0.301, 1.0):
        v = pixel_aupro(mask, maps, fpr_limit=limit)
        assert 0.0 <= v <= 1.0 and v == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError):
        pixel_aupro(mask, maps, fpr_limit=0.0)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("quantize", [None, 20])
def test_aupro_parity_with_reference(seed, quantize):
    rng = np.random.default_rng(100 + seed)
    masks = blobs(rng, 4, 28, 28, sigma=rng.uniform(1.5, 3.5), frac=rng.uniform(0.03, 0.12))
    maps = noisy_maps(rng, masks, signal=rng.uniform(0.3, 2.0), quantize=quantize)
    got = pixel_aupro(masks, maps)
    want = reference_aupro(masks, maps)
    assert 0.0 <= got <= 1.0
    assert got == pytest.approx(want, abs=1e-3)
    assert got == pytest.approx(want, abs=1e-9)  # same definition: should agree to rounding
    want = reference_aupro(masks, maps, 0.05)
    assert pixel_aupro(masks, maps, fpr_limit=0.05) == pytest.approx(want, abs=1e-9)


# ------------------------------------------------------------------------------------------------
# registry, class_metrics, mean_metrics
# ------------------------------------------------------------------------------------------------


def test_registry_and_resolve():
    assert tuple(METRICS) == ALL
    assert DEFAULT_METRICS == ("image_auroc", "pixel_auroc")
    assert resolve_metrics("all") == ALL
    assert resolve_metrics(["all"]) == ALL
    assert resolve_metrics(("pixel_aupro", "image_auroc", "pixel_aupro")) == ("pixel_aupro", "image_auroc")
    assert resolve_metrics("image_ap") == ("image_ap",)
    with pytest.raises(ValueError) as err:
        resolve_metrics(["image_auroc", "pixel_iou"])
    msg = str(err.value)
    assert "pixel_iou" in msg and "\n" not in msg
    assert all(name in msg for name in ALL)


def _class_data(seed=0, n=24, h=32, w=32):
    rng = np.random.default_rng(seed)
    masks = blobs(rng, n, h, w, p_anomalous=0.5)
    masks[0] = False  # at least one normal image
    labels = masks.reshape(n, -1).any(1).astype(int)
    maps = noisy_maps(rng, masks, signal=1.2)
    scores = maps.reshape(n, -1).max(1)
    return labels, scores, masks, maps


def test_class_metrics_exact_matches_functions():
    labels, scores, masks, maps = _class_data()
    got = class_metrics("all", labels, scores, masks, maps)
    assert tuple(got) == ALL
    for name in ALL:
        args = (labels, scores) if name.startswith("image_") else (masks, maps)
        assert got[name] == pytest.approx(METRICS[name](*args), abs=1e-12), name
    only = class_metrics(["pixel_ap"], None, None, masks, maps)
    assert list(only) == ["pixel_ap"]


def test_class_metrics_budget():
    labels, scores, masks, maps = _class_data(seed=1)
    exact = class_metrics("all", labels, scores, masks, maps)
    n_normal = int((~masks).sum())
    same = class_metrics("all", labels, scores, masks, maps, normal_pixel_budget=n_normal)
    assert same == exact
    sub = class_metrics("all", labels, scores, masks, maps, normal_pixel_budget=n_normal // 3, seed=7)
    for name in ALL:
        if name.startswith("image_"):
            assert sub[name] == exact[name]
        else:
            assert sub[name] != exact[name], name  # really subsampled
            assert sub[name] == pytest.approx(exact[name], abs=0.02), name
    again = class_metrics("all", labels, scores, masks, maps, normal_pixel_budget=n_normal // 3, seed=7)
    assert again == sub  # seeded
    with pytest.raises(ValueError):
        class_metrics("all", labels, scores, masks, maps, normal_pixel_budget=0)


def test_class_metrics_single_label_and_no_anomaly():
    labels, scores, masks, maps = _class_data(seed=2)
    out = class_metrics("all", np.ones_like(labels), scores, masks, maps)
    for name in ("image_auroc", "image_ap", "image_f1_max"):
        assert math.isnan(out[name])
    for name in ("pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro"):
        assert 0.0 <= out[name] <= 1.0
    out = class_metrics("all", np.zeros_like(labels), scores, np.zeros_like(masks), maps)
    assert all(math.isnan(v) for v in out.values())


def test_mean_metrics():
    per_class = {
        "a": {"image_auroc": 0.8, "pixel_auroc": float("nan")},
        "b": {"image_auroc": 0.6, "pixel_auroc": float("nan")},
        "c": {"image_auroc": float("nan"), "pixel_auroc": float("nan")},
    }
    out = mean_metrics(per_class)
    assert list(out) == ["image_auroc", "pixel_auroc"]
    assert out["image_auroc"] == pytest.approx(0.7)
    assert math.isnan(out["pixel_auroc"])
    assert mean_metrics({}) == {}


def test_subsample_is_without_replacement_across_chunks():
    from metrics.inputs import SUBSAMPLE_CHUNK as _CHUNK
    from metrics.inputs import subsample as _subsample

    values = np.arange(2 * _CHUNK + 12345, dtype=np.int32)
    sample = _subsample(values, 300_000, seed=5)
    assert sample.size == 300_000 and np.unique(sample).size == 300_000  # no repeats
    # every chunk (including the short last one) is represented about proportionally
    per_chunk = np.bincount(sample // _CHUNK)
    assert per_chunk.size == 3 and abs(per_chunk[0] / per_chunk[1] - 1.0) < 0.05 and per_chunk[2] > 0
    np.testing.assert_array_equal(sample, _subsample(values, 300_000, seed=5))
