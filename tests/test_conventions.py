"""Each published convention on hand-made maps whose answer is known and differs from ours."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from metrics import conventions as cv
from metrics import image_auroc, pixel_aupro, pixel_auroc

H = W = 32


def _blank(n):
    return np.zeros((n, H, W), dtype=np.float32), np.zeros((n, H, W), dtype=bool)


def test_official_flips_an_auroc_below_one_half_and_ours_does_not():
    maps, masks = _blank(4)
    masks[2:, 0:4, 0:4] = True  # images 2, 3 anomalous, but the map is hot on the normal ones
    maps[:2] += 1.0
    maps[2:, 0:4, 0:4] = 0.5
    labels = np.array([0, 0, 1, 1])
    ours_image = image_auroc(labels, cv.pooled_max_scores(maps))
    ours_pixel = pixel_auroc(masks, maps)
    assert ours_image == 0.0 and ours_pixel < 0.5
    got = cv.official(labels, masks, maps)
    assert got["image_auroc"] == 1.0
    assert got["pixel_auroc"] == pytest.approx(1.0 - ours_pixel)
    assert cv.ader(labels, masks, maps)["image_auroc"] == 0.0  # ADer does not flip


def test_top_one_percent_and_pooled_max_rank_images_apart():
    # A (anomalous): a 1-px line of 40 hot pixels; B (normal): a dim 16x16 block; C (normal): nothing.
    maps = np.zeros((3, 64, 64), dtype=np.float32)
    masks = np.zeros((3, 64, 64), dtype=bool)
    maps[0, 10, 5:45] = 1.0
    masks[0, 10, 5:45] = True
    maps[1, 20:36, 20:36] = 0.5
    labels = np.array([1, 0, 0])
    pooled = cv.pooled_max_scores(maps)
    top = cv.top_ratio_scores(maps)  # int(4096 * 0.01) = 40 values
    assert pooled[0] == pytest.approx(16 / 256) and pooled[1] == pytest.approx(0.5)
    assert top[0] == pytest.approx(1.0) and top[1] == pytest.approx(0.5 * 40 / 40)
    assert image_auroc(labels, pooled) == 0.5  # ours: A beats C, loses to B
    assert cv.dinomaly(labels, masks, maps)["image_auroc"] == 1.0
    assert cv.anomalib(labels, pooled, masks, maps)["image_auroc"] == 0.5


def _regions_map(region2_score: float):
    """Two regions: region 1 scores 0.9, region 2 ``region2_score``; 10% of the normal pixels 0.6, the
    rest 0; many small regions are not needed: each region weighs 1/2 of PRO whatever its size."""
    maps, masks = _blank(2)
    masks[0, 2:6, 2:6] = True  # region 1: 16 px
    maps[0, 2:6, 2:6] = 0.9
    masks[1, 10:30, 10:30] = True  # region 2: 400 px (the large one)
    maps[1, 10:30, 10:30] = region2_score
    normal = ~masks
    n_hot = int(round(0.1 * normal.sum()))
    idx = np.flatnonzero(normal.ravel())[:n_hot]
    flat = maps.reshape(-1)
    flat[idx] = 0.6
    return masks, maps, n_hot / normal.sum()


def test_aupro_normalisations_part_on_a_region_heavy_mask():
    masks, maps, hot = _regions_map(0.3)
    # exact curve: (0, 1/2) up to FPR `hot`, then PRO 1: area = hot/2 + (0.3 - hot), over 0.3
    exact = (hot * 0.5 + (0.3 - hot)) / 0.3
    assert pixel_aupro(masks, maps) == pytest.approx(exact, abs=1e-6)
    assert cv.anomalib(np.array([1, 1]), np.array([1.0, 1.0]), masks, maps)["pixel_aupro"] == pytest.approx(exact)
    # Dinomaly: FPR takes two values on its grid, 0 and `hot` < 0.3, so `hot` is rescaled to 1 and the
    # curve from (1, 1/2) to (0, 1/2) gives 1/2: the average PRO up to FPR `hot`, not up to 0.3
    assert cv.dinomaly_aupro(masks, maps) == pytest.approx(0.5)
    assert cv.adeval_pixel_metrics(masks, maps)["pixel_aupro"] == pytest.approx(exact, abs=1e-6)
    # region 2 at 0.61, in the same 50-bin strip as the normal pixels at 0.6: ADEval ties them (a diagonal
    # from (0, 1/2) to (hot, 1)) where the exact curve reaches PRO 1 at FPR 0
    masks, maps, hot = _regions_map(0.61)
    assert pixel_aupro(masks, maps) == pytest.approx(1.0)
    binned = (hot * 0.75 + (0.3 - hot)) / 0.3
    assert cv.adeval_pixel_metrics(masks, maps)["pixel_aupro"] == pytest.approx(binned, abs=1e-6)
    assert cv.dinomaly_aupro(masks, maps) == pytest.approx(1.0)


def test_adeval_binning_ties_scores_within_a_strip_for_auroc():
    # positives at 0.505, negatives at 0.5 and one at 0 and 1 (bounds): exact AUROC counts every
    # positive above the middle negatives; ADEval's 50 strips of width 0.02 put them in one bin (a tie)
    maps, masks = _blank(1)
    maps[0] = 0.5
    maps[0, 0, 0], maps[0, 0, 1] = 0.0, 1.0
    masks[0, 5:10, 5:10] = True
    maps[0, 5:10, 5:10] = 0.505
    n_neg = H * W - 25
    exact = pixel_auroc(masks, maps)
    assert exact == pytest.approx((n_neg - 1) / n_neg)
    binned = cv.adeval_pixel_metrics(masks, maps)["pixel_auroc"]
    # the positives beat the one 0, lose to the one 1 and tie with the n_neg - 2 at 0.5
    assert binned == pytest.approx((1 + 0.5 * (n_neg - 2)) / n_neg, abs=1e-6)


def test_pooled_auroc_is_not_the_mean_of_per_class_aurocs():
    coll = cv.Conventions(["pooled", "anomalib"])
    maps_a, masks_a = _blank(2)
    masks_a[1, :4, :4] = True
    maps_a[1, :4, :4] = 1.0  # class A: normal 0, anomalous 1
    maps_b = maps_a + 10.0  # class B: every value shifted by 10
    labels = np.array([0, 1])
    coll.add("a", labels, np.array([0.0, 1.0]), masks_a, maps_a)
    coll.add("b", labels, np.array([10.0, 11.0]), masks_a, maps_b)
    out = coll.result()
    assert out["anomalib"]["mean"]["image_auroc"] == 1.0 and out["anomalib"]["mean"]["pixel_auroc"] == 1.0
    assert out["pooled"]["mean"]["image_auroc"] == 0.75  # pairs (1,0) (11,0) (11,10) won, (1,10) lost
    n_pos, n_neg = 16, 2 * H * W - 16  # per class
    lost = n_pos * (2 * H * W - 16)  # class A's anomalous pixels (1) lose to every normal pixel of B (10)
    total = (2 * n_pos) * (2 * n_neg)
    assert out["pooled"]["mean"]["pixel_auroc"] == pytest.approx(1 - lost / total)


def test_ader_pixel_f1_max_uses_minmax_normalised_maps_at_21_thresholds():
    maps, masks = _blank(1)
    masks[0, :8] = True  # 256 anomalous pixels
    maps[0, :8] = np.linspace(0.2, 1.0, 8 * W, dtype=np.float32).reshape(8, W)
    maps[0, 8:] = 0.0
    maps[0, 8, :4] = 1.0  # 4 normal pixels at the top: no grid threshold separates them
    f1 = cv.ader_pixel_f1_max(masks, maps)
    # the best grid threshold is 0.15 (every anomalous pixel above, plus the 4): F1 = 2*256/(2*256+4)
    assert f1 == pytest.approx(2 * 256 / (2 * 256 + 4), abs=1e-6)
    from metrics import pixel_f1_max

    assert pixel_f1_max(masks, maps) == pytest.approx(f1)  # exact agrees here (same best threshold)


def test_unknown_convention_is_named():
    with pytest.raises(ValueError, match="eval.conventions: unknown 'adder'"):
        cv.Conventions(["adder"])


HAS_ADEVAL = importlib.util.find_spec("adeval") is not None and importlib.util.find_spec("cv2") is not None


@pytest.mark.skipif(not HAS_ADEVAL, reason="the adeval extra is not installed (pip install .[adeval])")
def test_our_adeval_binning_equals_the_adeval_package():
    rng = np.random.default_rng(0)
    maps = rng.random((6, H, W), dtype=np.float32)
    masks = np.zeros((6, H, W), dtype=bool)
    masks[1, 3:9, 4:12] = True
    masks[2, 20:30, 1:5] = True
    masks[2, 2:4, 25:28] = True
    maps[masks] += 0.4
    ours = cv.adeval_pixel_metrics(masks, maps)
    package = cv._adeval_package(masks, maps, 50)
    assert package is not None
    for key in ours:
        assert ours[key] == pytest.approx(package[key], abs=1e-6), key


def test_unknown_convention_stops_the_job_before_training(tmp_paths):
    from bench.job import run
    from tests.conftest import compose_cfg

    with pytest.raises(Exception, match="eval.conventions: unknown 'oficial'"):
        run(compose_cfg(["profile=smoke", "eval.conventions=[oficial]"]), tmp_paths / "run")


@pytest.mark.slow
def test_every_convention_end_to_end_in_the_record_and_the_curve(tmp_paths):
    from bench.job import run
    from tests.conftest import compose_cfg

    cfg = compose_cfg(["profile=smoke", "data.generator.n_train=4", "eval.metrics=all", "eval.every=1",
                       f"eval.conventions=[{','.join(cv.CONVENTIONS)}]"])
    record = run(cfg, tmp_paths / "run")
    assert record["status"] == "completed"
    conv = record["metrics"]["conventions"]
    assert list(conv) == list(cv.CONVENTIONS)
    for name in ("ader", "dinomaly", "anomalib"):
        assert set(conv[name]["mean"]) == set(cv.ALL)
        assert set(conv[name]["per_class"]) == set(record["metrics"]["per_class"])
    assert set(conv["official"]["mean"]) == {"image_auroc", "pixel_auroc"}
    assert set(conv["pooled"]["mean"]) == {"image_auroc", "pixel_auroc"}
    for key, value in record["metrics"]["mean"].items():  # anomalib >= 2.3 is ours on the same maps
        assert conv["anomalib"]["mean"][key] == pytest.approx(value), key
    assert "adeval" in conv["ader"]["backend"]
    assert record["timing"]["conventions_s"] > 0
    points = record["curve"]["points"]
    assert [p["epoch"] for p in points] == [1, 2]
    assert all(set(p["conventions"]) == set(cv.CONVENTIONS) for p in points)
    assert points[-1]["conventions"]["dinomaly"] == conv["dinomaly"]["mean"]
