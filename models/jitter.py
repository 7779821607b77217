"""Feature jittering (FJ), UniAD main paper Sec. 3.4.

During training, each feature token f (C channels) is perturbed, with probability ``prob``,
by Gaussian noise of standard deviation ``scale * ||f||_2 / C``. C is the channel count itself,
not its square root, exactly as the official code. The loss target stays the clean feature.
"""

import torch
from torch import nn

from rules import BOOL, PROB, REAL

# the keys of a reconstruction model that switch and size its jittering (``fj``, ``fj_scale``, ``fj_prob``)
JITTER_RULES = {"fj": BOOL, "fj_scale": REAL(0), "fj_prob": PROB}


class FeatureJitter(nn.Module):
    """Adds token-wise Gaussian noise in training mode; identity in eval mode."""

    def __init__(self, scale: float = 20.0, prob: float = 1.0):
        super().__init__()
        self.scale = float(scale)
        self.prob = float(prob)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens: (..., C) with channels last."""
        if not self.training or self.prob <= 0:
            return tokens
        channels = tokens.shape[-1]
        std = tokens.norm(dim=-1, keepdim=True) * (self.scale / channels)
        # drawn contiguous: ``randn_like`` of the transposed token view fills element by element (9x slower)
        noise = torch.randn(tokens.shape, dtype=tokens.dtype, device=tokens.device) * std
        if self.prob < 1:
            # one Bernoulli draw per batch element (dim 0), as the official code draws per sample
            keep = torch.rand(tokens.shape[0], device=tokens.device) < self.prob
            noise = noise * keep.view(-1, *([1] * (tokens.dim() - 1))).to(noise.dtype)
        return tokens + noise

    def extra_repr(self) -> str:
        return f"scale={self.scale}, prob={self.prob}"
