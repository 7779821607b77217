"""Tests of metrics.class_maps: the bounded-memory class buffer gives the pixel metrics exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import metrics.class_maps as class_maps
from metrics import class_metrics, pixel_aupro
from metrics.class_maps import ClassMaps, sort_scores
from tests.test_metrics import blobs, noisy_maps, reference_aupro, step_case

PIXEL = ("pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro")


def _case(seed, n=7, h=24, w=20, quantize=None):
    rng = np.random.default_rng(seed)
    masks = blobs(rng, n, h, w, sigma=rng.uniform(1.5, 3.0), frac=rng.uniform(0.03, 0.15))
    maps = noisy_maps(rng, masks, signal=rng.uniform(0.3, 1.5), quantize=quantize)
    return masks, maps


def _today(masks, maps, **kwargs):
    return class_metrics(PIXEL, None, None, masks, maps, **kwargs)


def _new(masks, maps, **kwargs):
    return ClassMaps.from_arrays(masks, maps).pixel_metrics(PIXEL, **kwargs)


def _assert_same(got, want):
    assert list(got) == list(want)
    for name in want:
        if math.isnan(want[name]):
            assert math.isnan(got[name]), name
        else:
            assert got[name] == pytest.approx(want[name], rel=0, abs=1e-12), name


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("quantize", [None, 8])
def test_equals_todays_functions(seed, quantize):
    masks, maps = _case(seed, quantize=quantize)
    _assert_same(_new(masks, maps), _today(masks, maps))


@pytest.mark.parametrize("on_host", [True, False])
def test_device_path_on_cpu_and_small_chunks(monkeypatch, on_host):
    """The device code path (torch.sort, torch boolean indexing) run on the CPU, and chunks of one
    image (partition, AUPRO) and of 37 anomalous scores (ranking; ties span chunks), against the values
    of the host path in one chunk (computed first)."""
    cases = [_case(seed, n=9, quantize=quantize) for seed, quantize in ((10, None), (11, 5), (12, 20))]
    want = [_today(masks, maps) for masks, maps in cases]
    monkeypatch.setattr(class_maps, "_on_host", lambda values: on_host)
    monkeypatch.setattr(class_maps, "_CHUNK", 37)
    for (masks, maps), values in zip(cases, want, strict=True):
        _assert_same(_new(masks, maps), values)


def test_sort_scores_both_paths(monkeypatch):
    values = torch.tensor([3.0, -1.0, float("nan"), 2.0, 2.0])
    memory = values.data_ptr()
    out = sort_scores(values)
    assert out.data_ptr() == memory  # in place on the host
    assert out[:4].tolist() == [-1.0, 2.0, 2.0, 3.0] and math.isnan(out[4].item())
    monkeypatch.setattr(class_maps, "_on_host", lambda values: False)
    other = sort_scores(torch.tensor([3.0, -1.0, 2.0]))
    assert other.tolist() == [-1.0, 2.0, 3.0]


def test_aupro_known_curves_and_limits():
    masks, maps = step_case()
    for limit, want in ((0.3, 0.75), (0.25, 0.7), (0.15, 0.0875 / 0.15)):
        got = ClassMaps.from_arrays(masks, maps).pixel_metrics(["pixel_aupro"], fpr_limit=limit)
        assert got["pixel_aupro"] == pytest.approx(want, abs=1e-12)
    masks, maps = step_case(tie_b1=True)  # one diagonal step where region pixels tie with normals
    got = ClassMaps.from_arrays(masks, maps).pixel_metrics(["pixel_aupro"])["pixel_aupro"]
    assert got == pytest.approx(0.22625 / 0.3, abs=1e-12)
    for seed in range(3):
        masks, maps = _case(20 + seed, quantize=10)
        for limit in (0.05, 0.3, 1.0):
            got = ClassMaps.from_arrays(masks, maps).pixel_metrics(["pixel_aupro"], fpr_limit=limit)["pixel_aupro"]
            assert got == pytest.approx(reference_aupro(masks, maps, limit), abs=1e-9)
            assert got == pytest.approx(pixel_aupro(masks, maps, fpr_limit=limit), abs=1e-12)


def test_perfect_map_and_region_below_all_normals():
    rng = np.random.default_rng(0)
    masks = blobs(rng, 5, 32, 32)
    maps = np.where(masks, 2.0 + rng.random(masks.shape), rng.random(masks.shape)).astype(np.float32)
    for amap in (maps, masks.astype(np.float32)):
        got = ClassMaps.from_arrays(masks, amap).pixel_metrics(PIXEL)
        assert all(0.0 <= v <= 1.0 and v == pytest.approx(1.0, abs=1e-12) for v in got.values()), got
    mask = np.zeros((1, 10, 10), dtype=bool)
    mask[0, 0:2, 0:2] = mask[0, 6:8, 6:8] = True
    amap = rng.uniform(0.1, 0.9, (1, 10, 10)).astype(np.float32)
    amap[0, 0:2, 0:2], amap[0, 6:8, 6:8] = 1.0, 0.0
    assert ClassMaps.from_arrays(mask, amap).pixel_metrics(["pixel_aupro"])["pixel_aupro"] == pytest.approx(0.5)


def test_budget_draws_todays_sample():
    masks, maps = _case(3, n=10, h=32, w=32)
    n_normal = int((~masks).sum())
    for budget in (n_normal // 3, n_normal // 10, n_normal, n_normal + 5):
        _assert_same(_new(masks, maps, normal_pixel_budget=budget, seed=7),
                     _today(masks, maps, normal_pixel_budget=budget, seed=7))
    with pytest.raises(ValueError, match="normal_pixel_budget"):
        _new(masks, maps, normal_pixel_budget=0)


def test_undefined_cases():
    masks, maps = _case(4)
    none = np.zeros_like(masks)
    buffer = ClassMaps.from_arrays(none, maps)
    assert all(math.isnan(v) for v in buffer.pixel_metrics(PIXEL).values())
    reason = buffer.undefined_reason("pixel_ap", labels=[0, 1, 1, 0])
    assert "2 anomalous images" in reason and "all zero" in reason
    everything = np.ones_like(masks)  # no normal pixel: AP and F1 are 1, AUROC and AUPRO undefined
    got = ClassMaps.from_arrays(everything, maps).pixel_metrics(PIXEL)
    _assert_same(got, _today(everything, maps))
    assert got["pixel_ap"] == 1.0 and math.isnan(got["pixel_auroc"]) and math.isnan(got["pixel_aupro"])
    assert ClassMaps.from_arrays(everything, maps).undefined_reason("pixel_auroc") == "no normal pixel"


def test_inputs_checked():
    masks, maps = _case(5, n=4, h=8, w=8)
    same = ClassMaps.from_arrays(masks[:, None].astype(np.uint8), maps[:, None]).pixel_metrics(PIXEL)
    _assert_same(same, _today(masks, maps))
    with pytest.raises(ValueError, match="0/1"):
        ClassMaps.from_arrays(masks.astype(np.uint8) * 255, maps)
    with pytest.raises(ValueError, match="equal shapes"):
        ClassMaps.from_arrays(masks[:, :4], maps)
    bad = maps.copy()
    bad[1, 2, 3] = np.nan
    for anomalous in (True, False):  # NaN on an anomalous pixel, then on a normal one
        bad_mask = masks.copy()
        bad_mask[1, 2, 3] = anomalous
        with pytest.raises(ValueError, match="NaN"):
            ClassMaps.from_arrays(bad_mask, bad).pixel_metrics(PIXEL)
    buffer = ClassMaps(4, 8, 8)
    buffer.add(maps[:2], masks[:2])
    with pytest.raises(ValueError, match="2 of its 4"):
        buffer.pixel_metrics(PIXEL)
    buffer.add(torch.from_numpy(maps[2:]), torch.from_numpy(masks[2:]))
    with pytest.raises(ValueError, match="more images"):
        buffer.add(maps[:1], masks[:1])
    buffer.pixel_metrics(PIXEL)
    with pytest.raises(RuntimeError, match="once"):
        buffer.pixel_metrics(PIXEL)
    assert ClassMaps.from_arrays(masks, maps).pixel_metrics(["image_auroc"]) == {}


def test_scale_benchmark_runs_small(capsys):
    """``bench.tools.eval_scale`` at a tiny size: the seven metrics defined, the figures printed."""
    from bench.tools.eval_scale import DefectDataset, main

    out = main(["--images", "30", "--size", "32", "--device", "cpu"])
    assert out["pixels"] == 30 * 32 * 32 and out["extra_mb"] >= 0 and out["metrics_s"] is not None
    assert len(out["metrics"]) == 7 and all(0.0 <= v <= 1.0 for v in out["metrics"].values())
    assert "1 class x 30 images at 32 px" in capsys.readouterr().out
    labels = [DefectDataset(30, 32, 1 / 3)[i]["label"] for i in range(30)]
    assert 0 < sum(labels) < 30
