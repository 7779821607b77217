"""Dinomaly as a detector (``model=dinomaly``): frozen encoder tokens → ``models.dinomaly.DinomalyDecoder``.

The target is what the decoder needs of the encoder, as one tensor (so the feature cache can hold it): the
target layers' tokens fused into ``(B, 1 + G, prefix + h*w, C)``, the decoder input first, then the G
encoder groups (``DinomalyDecoder.fuse``). A ViT backbone gives its chosen blocks' tokens
(``forward_tokens``, prefix tokens first); a CNN backbone (``models.backbone.FeatureExtractor``) gives one
concatenated map, taken as one target layer without prefix tokens, so every encoder group is that map.

Loss and map are the configured loss's, per group, averaged over the groups (``loss=dinomaly_hm``: Dinomaly's
hard-mining global cosine, map ``1 - cos``); at evaluation the map is blurred by a ``blur_size`` Gaussian of
``blur_sigma`` (zero padding, Dinomaly's ``get_gaussian_kernel(5, 4)``) and an image scores the mean of the
top ``top_ratio`` of its map (``max_ratio=0.01``), as the official ``evaluation_batch``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.detector import ReconstructionDetector
from models.dinomaly import DinomalyDecoder
from models.jitter import JITTER_RULES
from models.losses import ReconstructionLoss, upsample_map
from rules import INT, NAMES, ONE_OF, REAL


def gaussian_kernel2d(size: int, sigma: float) -> torch.Tensor:
    """(1, 1, size, size) normalised Gaussian centred on the middle cell (Dinomaly ``utils.get_gaussian_kernel``)."""
    x = torch.arange(size).repeat(size).view(size, size)
    grid = torch.stack([x, x.t()], dim=-1).float()
    mean, var = (size - 1) / 2.0, float(sigma) ** 2
    kernel = torch.exp(-((grid - mean) ** 2).sum(dim=-1) / (2 * var)) / (2 * math.pi * var)
    return (kernel / kernel.sum()).view(1, 1, size, size)


def top_ratio_scores(amap: torch.Tensor, ratio: float) -> torch.Tensor:
    """Mean of the ``int(H*W*ratio)`` largest values of each (B, 1, H, W) map (at least one)."""
    flat = amap.flatten(1)
    k = max(int(flat.shape[1] * ratio), 1)
    return flat.topk(k, dim=1).values.mean(dim=1)


def _group_problem(group) -> str | None:
    """Why one entry of ``model.groups`` is not a group of target layers (None when it is one)."""
    ok = isinstance(group, list | tuple) and group and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                                                           for i in group)
    return None if ok else f"{group!r} is not a group: give a non-empty list of layer indices >= 0, e.g. [0, 1, 2, 3]"


class DinomalyDetector(ReconstructionDetector):
    """Backbone tokens → Dinomaly's decoder; the backbone's width and prefix tokens size the decoder.

    Keyword arguments are ``DinomalyDecoder``'s (``neighbor_size`` is its ``neighbor_size``, named as
    ViTill's argument) and the evaluation's blur and image score.
    """

    RULES = {
        "num_heads": INT(1), "num_blocks": INT(1), "mlp_ratio": REAL(0, open_low=True),
        "attention": ONE_OF("linear", "softmax"), "neighbor_size": INT(0),  # 0 = no mask; softmax only
        "bottleneck_dropout": REAL(0, 1, open_high=True), "groups": NAMES(_group_problem),
        "blur_size": INT(0), "blur_sigma": REAL(0), "top_ratio": REAL(0, 1, open_low=True), **JITTER_RULES,
    }

    def __init__(self, backbone: nn.Module, loss: ReconstructionLoss, *, num_heads: int, num_blocks: int,
                 mlp_ratio: float, attention: str, neighbor_size: int, bottleneck_dropout: float,
                 groups: list[list[int]], fj: bool, fj_scale: float, fj_prob: float, blur_size: int,
                 blur_sigma: float, top_ratio: float):
        tokens = hasattr(backbone, "forward_tokens")
        embed_dim = int(backbone.embed_dim if tokens else backbone.out_channels)
        prefix = int(getattr(backbone, "num_prefix_tokens", 0)) if tokens else 0
        if embed_dim % int(num_heads):
            raise ValueError(f"model.num_heads={num_heads} does not divide the backbone's width {embed_dim}")
        if int(blur_size) < 1 or int(blur_size) % 2 == 0:
            raise ValueError(f"model.blur_size={blur_size}: give an odd kernel size (5)")
        decoder = DinomalyDecoder(embed_dim, num_heads, num_blocks, mlp_ratio, attention, neighbor_size,
                                  bottleneck_dropout, groups, prefix, fj=fj, fj_scale=fj_scale, fj_prob=fj_prob)
        super().__init__(decoder, loss, backbone)
        self.tokens = tokens
        self.blur_sigma = float(blur_sigma)
        self.top_ratio = float(top_ratio)
        self.register_buffer("blur_kernel", gaussian_kernel2d(int(blur_size), self.blur_sigma) if blur_sigma > 0
                             else torch.ones(1, 1, 1, 1), persistent=False)

    @property
    def target_key(self) -> dict:
        """What makes this target differ from the backbone's feature map (the feature cache's key): fused
        tokens in these encoder groups."""
        return {"kind": "dinomaly_fused_tokens", "groups": self.reconstruction.groups}

    @property
    def frozen_target(self) -> bool:
        return bool(getattr(self.backbone, "frozen", False))

    def set_iteration(self, iteration: int) -> None:
        """The training iteration (0-based), for a loss that changes with it (the hard-mining ramp)."""
        if hasattr(self.criterion, "iteration"):
            self.criterion.iteration = int(iteration)

    def target(self, images: torch.Tensor) -> torch.Tensor:
        if self.tokens:
            layers = self.backbone.forward_tokens(images)  # (B, L, prefix + h*w, C)
        else:
            layers = self.backbone(images).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, h*w, C)
        return self.reconstruction.fuse(layers)

    def reconstruct(self, target: torch.Tensor) -> torch.Tensor:
        return self.reconstruction(target)  # (B, G, C, h, w)

    def loss(self, target, rec):
        en = self.reconstruction.encoded(target)
        groups = en.shape[1]
        return sum(self.criterion(en[:, g], rec[:, g]) for g in range(groups)) / groups

    def anomaly_map(self, target, rec, size):
        """(B, 1, *size): the loss's map per group at image size, averaged over the groups, blurred."""
        en = self.reconstruction.encoded(target)
        maps = [upsample_map(self.criterion.anomaly_map(en[:, g], rec[:, g]), size) for g in range(en.shape[1])]
        amap = torch.cat(maps, dim=1).mean(dim=1, keepdim=True)
        if self.blur_sigma > 0:
            amap = F.conv2d(amap, self.blur_kernel.to(amap.dtype), padding=self.blur_kernel.shape[-1] // 2)
        return amap

    def image_scores(self, target, rec, amap) -> torch.Tensor:
        return top_ratio_scores(amap, self.top_ratio)
