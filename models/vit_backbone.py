"""Frozen ViT feature extractor: DINOv2 (with or without registers) and DINOv3 through timm.

Features are the raw outputs of the chosen blocks ``layers`` (0-based, no final norm), as the
encoder targets of Dinomaly's ViTill (official code: guojiajeremy/Dinomaly, models/uad.py, which
runs ``prepare_tokens`` then the blocks up to the last target one and keeps their outputs as they are).
Two views of them:

* ``forward(images)`` → (B, L·C, h, w): the patch tokens of each chosen block as a map on the patch
  grid, concatenated along channels in block order (the frozen feature map of UniAD, the baselines,
  PaDiM and PatchCore, whose "stages" are these blocks);
* ``forward_tokens(images)`` → (B, L, P + h·w, C): every token of each chosen block, the P prefix
  tokens (class, then registers) first.

The blocks after the last chosen one and the final norm are removed, so no unused block runs (and
none is counted in the FLOPs). The patch grid follows the image size (timm ``dynamic_img_size``,
position embeddings resampled); an image whose side is not a multiple of the patch size is resized
down to the nearest multiple first (64 px with 14-px patches → 56 px, a 4x4 grid), so the grid is
always ``image_size // patch_size``, the suite's ``feature_size``.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from urllib.parse import urlparse

import timm
import torch
import torch.nn.functional as F
from torch import nn

from models.backbone import BackboneWeightsError
from rules import BOOL, INT

WEIGHTS_FILE = "model.safetensors"  # the file of timm's published weights on the Hugging Face hub


def hub_id(timm_name: str) -> str:
    """The Hugging Face repository of timm's published weights for ``timm_name``."""
    cfg = timm.models.get_pretrained_cfg(timm_name)
    if cfg is None or not cfg.hf_hub_id:
        raise BackboneWeightsError(f"timm publishes no weights for {timm_name}: use backbone.weights=none or PATH")
    return cfg.hf_hub_id


def pretrained_file(name: str, timm_name: str) -> str:
    """Local path of timm's published weights: the Hugging Face cache's copy (``HF_HOME``; no network
    is used when it is there), else downloaded into that cache when the hub can be reached.

    Raises ``BackboneWeightsError`` with one line saying how to provide them.
    """
    from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

    repo = hub_id(timm_name)
    cached = try_to_load_from_cache(repo, WEIGHTS_FILE)
    if isinstance(cached, str):
        return cached
    try:
        if not constants.HF_HUB_OFFLINE:  # no name lookup: fail now (the hub client retries for ~20 s)
            socket.getaddrinfo(urlparse(constants.ENDPOINT).hostname, 443)
        return hf_hub_download(repo, WEIGHTS_FILE)
    except Exception as exc:  # offline, gated, proxy: all end the same way
        raise BackboneWeightsError(
            f"backbone={name}: pretrained weights are not in the Hugging Face cache and the hub cannot be reached "
            f"({type(exc).__name__}): download {WEIGHTS_FILE} of https://huggingface.co/{repo} and set "
            f"backbone.weights=PATH, or fill the cache (HF_HOME) on a machine with network"
        ) from exc


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """A weights file read as data: ``.safetensors`` (safetensors package) or a torch state dict."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise BackboneWeightsError(f"backbone.weights={path}: no such file; use pretrained, none, or a weights file")
    if file.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise BackboneWeightsError(f"backbone.weights={path}: the safetensors package is not installed; "
                                       "give a torch state dict (.pth) instead") from exc
        try:
            return load_file(str(file), device="cpu")
        except Exception as exc:
            raise BackboneWeightsError(f"backbone.weights={path}: not a readable safetensors file ({exc})") from exc
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or non-torch file
        raise BackboneWeightsError(f"backbone.weights={path}: cannot be read as a torch state dict ({exc})") from exc
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise BackboneWeightsError(f"backbone.weights={path}: holds no state dict")
    return state


def load_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into the full timm model; names of the original releases (DINOv2's
    ``register_tokens``, ``mask_token``...) go through timm's ``checkpoint_filter_fn`` of the model's module."""
    own = model.state_dict()
    if not set(own) <= set(state):
        fix = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
        if fix is not None:
            state = fix(state, model)
    missing, _ = model.load_state_dict(state, strict=False)
    if missing:
        raise BackboneWeightsError(f"backbone.weights={source} lacks {len(missing)} tensors of the model "
                                   f"(e.g. {missing[0]}): is it a checkpoint of this backbone?")


class ViTFeatureExtractor(nn.Module):
    """A timm ViT cut after its last chosen block → patch-token maps or all tokens of the chosen blocks."""

    # the keys of its config node that take numbers, in the vocabulary of the suite's rules
    RULES = {"layers": INT(0, items=True), "feature_stride": INT(1), "frozen": BOOL}

    def __init__(
        self,
        name: str,
        timm_name: str,
        layers: list[int],
        weights: str = "pretrained",
        frozen: bool = True,
        feature_stride: int | None = None,
    ):
        super().__init__()
        self.name = name
        self.frozen = frozen
        net = timm.create_model(timm_name, pretrained=False, num_classes=0, dynamic_img_size=True)
        depth = len(net.blocks)
        self.layers = [int(k) for k in layers]
        ascending = self.layers == sorted(set(self.layers))
        if not self.layers or not ascending or not 0 <= self.layers[0] <= self.layers[-1] < depth:
            raise ValueError(f"backbone.layers={self.layers}: give ascending block indices in [0, {depth - 1}] "
                             f"({name} has {depth} blocks)")
        patch = net.patch_embed.patch_size
        self.feature_stride = int(patch[0])
        if patch[0] != patch[1]:
            raise ValueError(f"{timm_name} has non-square patches {tuple(patch)}")
        if feature_stride is not None and int(feature_stride) != self.feature_stride:
            raise ValueError(f"backbone.feature_stride={feature_stride} but {name} has {self.feature_stride}-pixel "
                             f"patches: set backbone.feature_stride={self.feature_stride}")
        if weights == "pretrained":
            load_weights(net, read_state_dict(pretrained_file(name, timm_name)), f"pretrained ({hub_id(timm_name)})")
        elif weights not in ("none", None):
            load_weights(net, read_state_dict(str(weights)), str(weights))
        net.prune_intermediate_layers(self.layers, prune_norm=True, prune_head=True)
        self.net = net
        self.depth = depth
        self.embed_dim = int(net.embed_dim)
        self.num_prefix_tokens = int(net.num_prefix_tokens)
        self.channels: list[int] = [self.embed_dim] * len(self.layers)
        self.strides: list[int] = [self.feature_stride] * len(self.layers)
        self.stages: list[int] = list(self.layers)  # what PaDiM and PatchCore select by (``model.layers``)
        if frozen:
            self.net.requires_grad_(False)
            self.net.eval()

    @staticmethod
    def check_weights(name: str, timm_name: str, weights: str) -> None:
        """What the constructor will load is there (run before the job's data checks): pretrained weights
        in the Hugging Face cache (fetched into it when the hub can be reached), a weights file on disk."""
        if weights == "pretrained":
            pretrained_file(name, timm_name)
        elif weights not in ("none", "None") and not Path(weights).expanduser().is_file():
            raise BackboneWeightsError(f"backbone.weights={weights}: no such file; use pretrained, none, or a "
                                       "weights file (.safetensors or a torch state dict)")

    @property
    def out_channels(self) -> int:
        return sum(self.channels)

    def train(self, mode: bool = True) -> ViTFeatureExtractor:
        """A frozen backbone stays in eval mode (no drop-path, no dropout)."""
        super().train(mode and not self.frozen)
        return self

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """The patch grid of an image of ``height`` x ``width`` pixels."""
        return height // self.feature_stride, width // self.feature_stride

    def _blocks(self, images: torch.Tensor) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], tuple[int, int]]:
        """[(patch tokens (B, h·w, C), prefix tokens (B, P, C)) per chosen block], (h, w)."""
        h, w = self.grid(*images.shape[-2:])
        if h < 1 or w < 1:
            raise ValueError(f"images of {tuple(images.shape[-2:])} px are smaller than one {self.feature_stride}-px "
                             "patch: raise data.image_size")
        size = (h * self.feature_stride, w * self.feature_stride)
        if tuple(images.shape[-2:]) != size:  # down to a multiple of the patch size
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            out = self.net.forward_intermediates(images, indices=self.layers, norm=False, output_fmt="NLC",
                                                 intermediates_only=True, return_prefix_tokens=True)
        if not self.num_prefix_tokens:  # timm returns bare tensors without prefix tokens
            out = [(t, t[:, :0]) for t in out]
        return out, (h, w)

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """(B, L, P + h·w, C): every token of each chosen block, prefix tokens (class, registers) first."""
        blocks, _ = self._blocks(images)
        return torch.stack([torch.cat([prefix, patches], dim=1) for patches, prefix in blocks], dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, L·C, h, w): each chosen block's patch tokens as a map, concatenated in block order."""
        blocks, (h, w) = self._blocks(images)
        maps = [patches.transpose(1, 2).reshape(patches.shape[0], -1, h, w) for patches, _ in blocks]
        return torch.cat(maps, dim=1)
