"""Gaussian smoothing of anomaly maps at image resolution (PaDiM sec. 3.3, PatchCore sec. 4.1: sigma = 4)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, device=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of radius ``ceil(truncate * sigma)`` (scipy's ``gaussian_filter`` default)."""
    radius = max(int(math.ceil(truncate * sigma)), 1)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(amap: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (B, 1, H, W) map with reflected borders; ``sigma <= 0`` is a no-op."""
    if sigma <= 0:
        return amap
    k = gaussian_kernel1d(sigma, device=amap.device).to(amap.dtype)
    r = k.numel() // 2
    h, w = amap.shape[-2:]
    # reflect padding needs pad < size; fall back to replicate on tiny maps
    mode = "reflect" if r < min(h, w) else "replicate"
    out = F.conv2d(F.pad(amap, (r, r, 0, 0), mode=mode), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(out, (0, 0, r, r), mode=mode), k.view(1, 1, -1, 1))
