"""The class buffer's exact pixel metrics on CUDA (``gpu`` marker; run by ``make gpu-check``, skipped without CUDA).

``UNIAD_BENCH_GPU_TEST_DEVICE=cpu`` runs them on the CPU (the CI dry run). On the device the maps stay
there, the sorts are ``torch.sort`` and the searches ``torch.searchsorted``; the values must equal the
host's.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
import torch

from bench.tools.eval_scale import DefectDataset
from metrics.class_maps import ClassMaps
from tests.test_class_maps import PIXEL, _assert_same, _case

DEVICE = torch.device(os.environ.get("UNIAD_BENCH_GPU_TEST_DEVICE", "cuda"))
CUDA = DEVICE.type == "cuda"
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(CUDA and not torch.cuda.is_available(), reason="needs CUDA (make gpu-check)")]


@pytest.mark.parametrize("quantize", [None, 6])
def test_device_equals_host(quantize):
    for seed in range(3):
        masks, maps = _case(30 + seed, n=12, h=40, w=36, quantize=quantize)
        host = ClassMaps.from_arrays(masks, maps).pixel_metrics(PIXEL)
        on_device = ClassMaps.from_arrays(masks, torch.from_numpy(maps).to(DEVICE), device=DEVICE)
        assert on_device.maps.device.type == DEVICE.type
        _assert_same(on_device.pixel_metrics(PIXEL), host)
        budget = int((~masks).sum()) // 4
        _assert_same(ClassMaps.from_arrays(masks, maps, device=DEVICE).pixel_metrics(PIXEL, normal_pixel_budget=budget),
                     ClassMaps.from_arrays(masks, maps).pixel_metrics(PIXEL, normal_pixel_budget=budget))


def test_device_class_of_760_images_prints_time_and_memory():
    data = DefectDataset(760, 224, 1 / 3)
    items = [data[i] for i in range(len(data))]
    masks = np.stack([it["mask"][0].numpy() > 0.5 for it in items])
    maps = torch.stack([it["image"][0] for it in items])
    host = ClassMaps.from_arrays(masks, maps).pixel_metrics(PIXEL)
    if CUDA:
        torch.cuda.synchronize(DEVICE)
        torch.cuda.reset_peak_memory_stats(DEVICE)
    t0 = time.perf_counter()
    buffer = ClassMaps.from_arrays(masks, maps.to(DEVICE), device=DEVICE)
    got = buffer.pixel_metrics(PIXEL)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(DEVICE) / 2**20 if CUDA else float("nan")
    print(f"class maps on {DEVICE}: 760 x 224 x 224, four pixel metrics in {seconds:.2f} s, "
          f"peak {peak:.0f} MiB allocated")
    _assert_same(got, host)
