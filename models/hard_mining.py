"""Dinomaly's loss: global cosine distance with hard-point mining (Dinomaly sec. 3.4; official ``utils.py``
``global_cosine_hm_percent``).

Per group, the loss is the batch mean of ``1 - cos`` between the *whole* flattened encoder and decoder maps
of an image (one cosine per image, not per point). Hard mining acts on the gradient only: every point
(position) whose cosine distance over channels is below that of the ``1 - p`` share of hardest points gets
its decoder gradient multiplied by ``factor``, so training concentrates on the points still badly
reconstructed. ``p = 0`` is the plain global cosine. The recipe ramps ``p`` from 0 to 0.9 over the first
1,000 iterations with ``factor = 0.1`` (``dinomaly_mvtec_uni.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.losses import CosineLoss
from rules import INT, REAL


def hard_mining_global_cosine(en: torch.Tensor, de: torch.Tensor, p: float, factor: float) -> torch.Tensor:
    """One group: (B, C, h, w) encoder map (its gradient is not used) and decoder map → scalar loss.

    The threshold is the ``int(n * (1 - p))``-th largest point distance (n = B*h*w points; at least the
    largest); points strictly below it have their gradient scaled by ``factor``.
    """
    en = en.detach()
    loss = (1 - F.cosine_similarity(en.reshape(en.shape[0], -1), de.reshape(de.shape[0], -1))).mean()
    if de.requires_grad and p > 0:
        with torch.no_grad():
            point = 1 - F.cosine_similarity(en, de).unsqueeze(1)  # (B, 1, h, w)
            k = max(int(point.numel() * (1 - p)), 1)
            threshold = torch.topk(point.reshape(-1), k=k)[0][-1]
            scale = torch.where(point < threshold, factor, 1.0).to(de.dtype)
        de.register_hook(lambda grad: grad * scale)
    return loss


class HardMiningCosineLoss(CosineLoss):
    """``loss=dinomaly_hm``: the hard-mining global cosine per group, ``p`` ramped linearly from 0 to ``p``
    over the first ``ramp_iterations`` training iterations (``detector.set_iteration``); map ``1 - cos``.

    Called on one group's (B, C, h, w) maps; the Dinomaly detector averages it over the groups.
    """

    name = "dinomaly_hm"
    RULES = {"p": REAL(0, 1, open_high=True), "factor": REAL(0, 1), "ramp_iterations": INT(0)}

    def __init__(self, p: float = 0.9, factor: float = 0.1, ramp_iterations: int = 1000):
        super().__init__()
        self.p_final = float(p)
        self.factor = float(factor)
        self.ramp_iterations = int(ramp_iterations)
        self.iteration = 0  # set by the training loop before each step

    @property
    def p(self) -> float:
        """``min(p * it / ramp, p)`` at iteration ``it`` (0-based), as the recipe's loop."""
        if self.ramp_iterations <= 0:
            return self.p_final
        return min(self.p_final * self.iteration / self.ramp_iterations, self.p_final)

    def forward(self, f_org: torch.Tensor, f_rec: torch.Tensor) -> torch.Tensor:
        return hard_mining_global_cosine(f_org, f_rec, self.p, self.factor)
