"""Dinomaly's reconstruction (Guo et al., CVPR 2025, sec. 3; official ``models/uad.py`` ``ViTill``).

The outputs of the encoder's target layers are averaged into one token map, passed through a noisy
bottleneck and a stack of pre-norm transformer blocks; the blocks' outputs, in reverse order, are averaged
in groups and compared with the encoder's layers averaged in the same groups ("loose reconstruction",
sec. 3.4). Everything here runs on tokens ``(B, prefix + h*w, C)`` with the prefix (class and register)
tokens first; they take part in the attention and are dropped only at the end.

``DinomalyDecoder.forward_tokens`` is the official forward after the encoder; ``fuse`` and ``decode``
split it for a detector whose cached target is the fused encoder tokens. ``hard_mining_cosine_loss`` and
``anomaly_map`` are the official ``global_cosine_hm_percent`` and ``cal_anomaly_maps``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.dinomaly_blocks import Block, NoisyBottleneck, neighbour_blocked, trunc_normal_init_
from models.hard_mining import hard_mining_global_cosine
from models.jitter import FeatureJitter


class DinomalyDecoder(nn.Module):
    """Bottleneck + decoder blocks + grouping of Dinomaly (all but the frozen encoder)."""


    def __init__(self, embed_dim: int, num_heads: int, num_blocks: int, mlp_ratio: float, attention: str,
                 neighbor_size: int, bottleneck_dropout: float, groups: list[list[int]], prefix_tokens: int,
                 fj: bool = False, fj_scale: float = 20.0, fj_prob: float = 1.0):
        """Sizes as the official recipe's for ViT-B: 768 / 12 heads / 8 blocks / mlp ratio 4.

        Args:
            embed_dim, num_heads: token width and heads of every decoder block (the encoder's).
            num_blocks: decoder blocks (8).
            mlp_ratio: hidden width of each block's MLP over ``embed_dim`` (4).
            attention: ``linear`` (Dinomaly's, sec. 3.3) or ``softmax`` (its ablation).
            neighbor_size: with softmax attention, each patch token's ``n x n`` window is masked after the
                softmax (ViTill's ``mask_neighbor_size``); 0 = no mask.
            bottleneck_dropout: the noisy bottleneck's dropout (0.2); 0 leaves it a plain MLP.
            groups: decoder (and encoder) layers averaged together, e.g. ``[[0, 1, 2, 3], [4, 5, 6, 7]]``
                (two loose groups) or ``[[0], [1], ...]`` (layer to layer). Decoder indices count the blocks'
                outputs in reverse; encoder indices the target layers. With one target layer (a CNN map)
                every encoder group is that layer.
            prefix_tokens: class and register tokens before the patch tokens (5 for DINOv2 with registers).
            fj: UniAD's feature jittering (models.jitter) on the bottleneck's input during training.
            fj_scale, fj_prob: its scale and per-image probability.
        """
        super().__init__()
        if attention == "linear" and neighbor_size:
            raise ValueError(f"model.neighbor_size={neighbor_size} needs model.attention=softmax: linear "
                             "attention has no attention weights to mask; set model.neighbor_size=0")
        if not groups or any(not g for g in groups) or any(not 0 <= i < num_blocks for g in groups for i in g):
            raise ValueError(f"model.groups={groups}: give non-empty lists of decoder block indices in "
                             f"[0, {num_blocks}), e.g. [[0, 1, 2, 3], [4, 5, 6, 7]]")
        self.embed_dim = embed_dim
        self.prefix_tokens = int(prefix_tokens)
        self.neighbor_size = int(neighbor_size)
        self.groups = [list(map(int, g)) for g in groups]
        self.jitter = FeatureJitter(fj_scale, fj_prob) if fj else None
        self.bottleneck = NoisyBottleneck(embed_dim, 4 * embed_dim, bottleneck_dropout)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, attention) for _ in range(num_blocks))
        trunc_normal_init_(self)

    # --- the official forward, split in two ---

    def encoder_groups(self, num_layers: int) -> list[list[int]]:
        """The target layers averaged into each encoder group."""
        if num_layers == 1:
            return [[0] for _ in self.groups]
        if any(i >= num_layers for g in self.groups for i in g):
            raise ValueError(f"model.groups={self.groups} index {num_layers} encoder target layers out of range")
        return self.groups

    def fuse(self, layers: torch.Tensor) -> torch.Tensor:
        """(B, L, N, C) target-layer tokens → (B, 1 + G, N, C): the decoder's input (mean of all L layers),
        then each encoder group's mean. What a detector caches: it determines the target and the input."""
        fused = [layers.mean(dim=1)]
        fused += [layers[:, idx].mean(dim=1) for idx in self.encoder_groups(layers.shape[1])]
        return torch.stack(fused, dim=1)

    def decode(self, fused: torch.Tensor) -> torch.Tensor:
        """``fuse``'s output → decoder groups (B, G, C, h, w), prefix tokens dropped."""
        x = fused[:, 0]
        if self.jitter is not None:
            x = self.jitter(x)
        x = self.bottleneck(x)
        blocked = None
        if self.neighbor_size > 0:
            side = self.side(x.shape[1])
            blocked = neighbour_blocked(side, self.neighbor_size, self.prefix_tokens).to(x.device)
        outputs = []
        for block in self.blocks:
            x = block(x, blocked)
            outputs.append(x)
        outputs = outputs[::-1]
        groups = [torch.stack([outputs[i] for i in idx], dim=1).mean(dim=1) for idx in self.groups]
        return self.to_maps(torch.stack(groups, dim=1))

    def encoded(self, fused: torch.Tensor) -> torch.Tensor:
        """``fuse``'s output → encoder groups (B, G, C, h, w), prefix tokens dropped."""
        return self.to_maps(fused[:, 1:])

    def forward_tokens(self, tokens: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Target-layer outputs, each (B, prefix + h*w, C) → (en, de): lists of (B, C, h, w), one per group."""
        fused = self.fuse(torch.stack(list(tokens), dim=1))
        return list(self.encoded(fused).unbind(1)), list(self.decode(fused).unbind(1))

    forward = decode

    # --- shapes ---

    def side(self, n_tokens: int) -> int:
        """The side of the square patch grid of ``n_tokens`` tokens (prefix included)."""
        side = math.isqrt(n_tokens - self.prefix_tokens)
        if side * side != n_tokens - self.prefix_tokens:
            raise ValueError(f"{n_tokens} tokens less {self.prefix_tokens} prefix tokens is not a square grid")
        return side

    def to_maps(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, G, prefix + h*w, C) → (B, G, C, h, w) (patch tokens in row-major order)."""
        b, g, n, c = tokens.shape
        side = self.side(n)
        return tokens[:, :, self.prefix_tokens:].transpose(2, 3).reshape(b, g, c, side, side)


def official_key(name: str) -> str:
    """Our parameter name → the official one (``bottleneck.0.fc1.weight``, ``decoder.3.attn.qkv.weight``)."""
    if name.startswith("bottleneck."):
        return "bottleneck.0." + name[len("bottleneck."):]
    if name.startswith("blocks."):
        return "decoder." + name[len("blocks."):]
    return name


def hard_mining_cosine_loss(en: list[torch.Tensor], de: list[torch.Tensor], p: float, factor: float) -> torch.Tensor:
    """Mean over the groups of ``models.hard_mining.hard_mining_global_cosine`` (``global_cosine_hm_percent``)."""
    return sum(hard_mining_global_cosine(e, d, p, factor) for e, d in zip(en, de, strict=True)) / len(en)


def anomaly_map(en: list[torch.Tensor], de: list[torch.Tensor], size) -> torch.Tensor:
    """(B, 1, *size): per group 1 - cosine over channels, bilinear (align_corners=True) to ``size``, averaged
    over the groups (``cal_anomaly_maps``; the evaluation's Gaussian blur comes after)."""
    maps = [F.interpolate((1 - F.cosine_similarity(e, d)).unsqueeze(1), size=tuple(size), mode="bilinear",
                          align_corners=True) for e, d in zip(en, de, strict=True)]
    return torch.cat(maps, dim=1).mean(dim=1, keepdim=True)
