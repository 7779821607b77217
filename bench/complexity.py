"""Learnable parameters and FLOPs of a detector (Table S7), without touching data.

FLOPs come from ``torch.utils.flop_counter.FlopCounterMode`` at batch 1 and the configured image
size: 2 FLOPs per multiply-add of matmuls and convolutions (element-wise ops are not counted).
What is counted is what the suite runs: the backbone cut after its last selected stage, the
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


_EXTRA_FLOPS = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops}


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


def complexity(detector: nn.Module, image_size: int) -> dict:
    backbone = getattr(detector, "backbone", None)
    return {
        "learnable_params": count_parameters(detector),
        "reconstruction_params": count_parameters(detector.reconstruction, learnable_only=False),
        "backbone_params": count_parameters(backbone, learnable_only=False) if backbone is not None else 0,
        "gflops": round(count_flops(detector, image_size) / 1e9, 4),
        "image_size": image_size,
        "flops_counted": "truncated backbone + reconstruction + anomaly map, batch 1, 2 FLOPs per MAC",
    }
