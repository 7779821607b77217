"""Learnable parameters and FLOPs of a detector (Table S7), without touching data.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` at batch 1 and the configured image
size: 2 FLOPs per multiply-add of matmuls and convolutions (element-wise ops are not counted).
What is counted is what the suite runs: the backbone cut after its last selected stage (a ViT: block), the
reconstruction model and the anomaly map.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def count_parameters(module: nn.Module, learnable_only: bool = True) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not learnable_only)


def _cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """FLOPs of PyTorch's CPU fused attention kernel, which the counter does not know by default."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cdist_flops(x1_shape, x2_shape, *args, out_shape=None, **kwargs) -> int:
    """Euclidean ``torch.cdist`` as the matrix product it runs: 2 * P * R * M per batch (norms not counted)."""
    batch = 1
    for n in x1_shape[:-2]:
        batch *= n
    return 2 * batch * x1_shape[-2] * x2_shape[-2] * x1_shape[-1]


_EXTRA_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
                torch.ops.aten._cdist_forward: _cdist_flops,  # small inputs
                torch.ops.aten._euclidean_dist: _cdist_flops}  # cdist's matrix-product path (large inputs)


def count_flops(module: nn.Module, image_size: int) -> int:
    was_training = module.training
    module.eval()
    try:
        x = torch.zeros(1, 3, image_size, image_size, device=next(module.parameters()).device)
        # not under no_grad: that trips the counter's module tracker on expanded parameters
        with FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOPS) as counter:
            module(x)
        return int(counter.get_total_flops())
    finally:
        module.train(was_training)


def statistics_complexity(detector: nn.Module, image_size: int) -> dict:
    """PaDiM / PatchCore: no learnable parameters; what they store and compute.

    ``stored_numbers``: the fitted statistics (PaDiM: positions x (d + d^2) means and covariances;
    PatchCore: bank rows x dims), numbers, not learnable parameters (Table S7 lists PaDiM's as its
    "learnable params"). FLOPs: the backbone on a real image plus scoring one image (distances,
    Mahalanobis products, blur) counted on meta tensors of the stored size, so no memory is allocated.
    """
    backbone = detector.backbone
    method = detector.method
    backbone_flops = count_flops(backbone, image_size)
    side = image_size // int(getattr(backbone, "feature_stride", 16))
    probe = method.probe()
    feats = torch.empty(1, backbone.out_channels, side, side, device="meta")
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOPS) as counter:
        rec = probe.score(feats)
        amap = probe.anomaly_map(rec, (image_size, image_size))
        probe.image_scores(rec, amap)
    scoring_flops = int(counter.get_total_flops())
    stored = method.stored_numbers()
    return {
        "learnable_params": count_parameters(detector),
        **stored,
        "stored_unit": "numbers (fitted statistics, not learnable parameters)",
        "reconstruction_params": 0,
        "backbone_params": count_parameters(backbone, learnable_only=False),
        "gflops": round((backbone_flops + scoring_flops) / 1e9, 4),
        "backbone_gflops": round(backbone_flops / 1e9, 4),
        "scoring_gflops": round(scoring_flops / 1e9, 4),
        "image_size": image_size,
        "flops_counted": "truncated backbone + scoring of one image (distances or Mahalanobis, blur), "
                         "batch 1, 2 FLOPs per MAC",
    }


def complexity(detector: nn.Module, image_size: int) -> dict:
    if detector.fits_by_statistics:
        return statistics_complexity(detector, image_size)
    backbone = getattr(detector, "backbone", None)
    return {
        "learnable_params": count_parameters(detector),
        "reconstruction_params": count_parameters(detector.reconstruction, learnable_only=False),
        "backbone_params": count_parameters(backbone, learnable_only=False) if backbone is not None else 0,
        "gflops": round(count_flops(detector, image_size) / 1e9, 4),
        "image_size": image_size,
        "flops_counted": "truncated backbone + reconstruction + anomaly map, batch 1, 2 FLOPs per MAC",
    }
