"""Feature regression losses of D.3 and the anomaly maps that go with them (S1-S3).

Each loss fixes how the anomaly map is computed, so the two live together:

* ``mse``: official ``nn.MSELoss`` (mean over B, C, H, W); map ``||f_org - f_rec||_2`` over channels.
* ``norm_mse``: both features unit-normalised per location; loss ``mean_{HW} ||n_org - n_rec||^2``
  (S2); map ``||n_org - n_rec||_2``.
* ``cosine``: loss ``mean_{HW} (1 - cos(f_org, f_rec))`` (S3 written as a distance); map ``1 - cos``.

Maps are (B, 1, H, W) at feature resolution; ``upsample_map`` brings them to the image size with
bilinear ``align_corners=True`` (the official ``UpsamplingBilinear2d``).
"""

import torch
import torch.nn.functional as F
from torch import nn


class ReconstructionLoss(nn.Module):
    name = "base"

    def forward(self, f_org: torch.Tensor, f_rec: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def anomaly_map(self, f_org: torch.Tensor, f_rec: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class MSELoss(ReconstructionLoss):
    name = "mse"

    def forward(self, f_org, f_rec):
        return F.mse_loss(f_rec, f_org)

    def anomaly_map(self, f_org, f_rec):
        return (f_org - f_rec).pow(2).sum(dim=1, keepdim=True).sqrt()


class NormMSELoss(ReconstructionLoss):
    name = "norm_mse"

    def forward(self, f_org, f_rec):
        diff = F.normalize(f_org, dim=1) - F.normalize(f_rec, dim=1)
        return diff.pow(2).sum(dim=1).mean()

    def anomaly_map(self, f_org, f_rec):
        diff = F.normalize(f_org, dim=1) - F.normalize(f_rec, dim=1)
        return diff.pow(2).sum(dim=1, keepdim=True).sqrt()


class CosineLoss(ReconstructionLoss):
    name = "cosine"

    def forward(self, f_org, f_rec):
        return (1 - F.cosine_similarity(f_org, f_rec, dim=1)).mean()

    def anomaly_map(self, f_org, f_rec):
        return (1 - F.cosine_similarity(f_org, f_rec, dim=1)).unsqueeze(1)


def upsample_map(amap: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    if tuple(amap.shape[-2:]) == tuple(size):
        return amap
    return F.interpolate(amap, size=size, mode="bilinear", align_corners=True)


def image_scores(amap: torch.Tensor, reduction: str = "max", pool_size: int = 16) -> torch.Tensor:
    """Image score from a (B, 1, H, W) map: ``max`` of the ``pool_size`` stride-1 average-pooled map
    (MVTec) or the ``mean`` of the map (CIFAR-10), as the official ``utils/eval_helper.py``."""
    if reduction == "mean":
        return amap.flatten(1).mean(dim=1)
    if reduction == "max":
        k = min(pool_size, amap.shape[-1], amap.shape[-2])
        return F.avg_pool2d(amap, kernel_size=k, stride=1).flatten(1).amax(dim=1)
    raise ValueError(f"eval.score={reduction!r} is unknown; choose max or mean")
