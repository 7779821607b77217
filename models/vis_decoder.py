"""Decoder that renders (reconstructed) backbone features as images (UniAD supplementary C.3).

C.3: "we pre-train a decoder on both normal and anomalous samples to recover the backbone-extracted
features to images, then use this decoder to render reconstructed features. [...] The decoder follows
a reversed architecture of ResNet-34. The down-sampling in the original network is replaced by
up-sampling implemented by the transposed convolution."

Architecture, features (B, C_in, S/s, S/s) with s = ``feature_stride`` → image (B, 3, S, S):

* 1x1 conv C_in→512 + BN + ReLU (entry projection);
* ResNet-34's stages in reverse order (attributes ``layer1``..``layer4`` in decoding order, so ``layer1`` is
  the reversed stage-4): 3, 6, 4, 3 BasicBlocks with 512, 256, 128, 64 channels
  (``base_channels`` x 8, 4, 2, 1). The first block of a stage maps the previous width to its own with a
  projection shortcut; where it up-samples x2, its first 3x3 conv becomes
  ``ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1)`` and its shortcut
  ``ConvTranspose2d(k=2, stride=2)`` + BN (the 1x1 stride-2 shortcut reversed without leaving holes);
* the reversed stem: the max-pool becomes ``ConvTranspose2d(64→64, k=3, s=2, p=1, op=1)`` + BN + ReLU
  and the 7x7 stride-2 conv becomes ``ConvTranspose2d(64→3, k=7, s=2, p=3, op=1)``, the output layer
  (no BN, no activation: the image is in the backbone's normalised input space).

The number of x2 up-samplings is log2(``feature_stride``): two in the reversed stem, the rest in the
*last* stages (for stride 16: the 128- and 64-channel stages, so 64 channels sit at stride 4 and 128 at
stride 8, as in ResNet-34; the 512→256 transition stays at stride 16). Strides 4 to 32 are supported; a
stride that is no power of two (a ViT's 14-pixel patches) up-samples to the next power of two, then resizes
the image bilinearly to h*stride (C.3 uses ResNet/EfficientNet features only, so this is our extension).
Xavier-uniform weights and zero biases for every (transposed) conv, BN default.
"""

from __future__ import annotations

import math

import torch
from torch import nn

REVERSED_RESNET34_BLOCKS = (3, 6, 4, 3)


class UpBasicBlock(nn.Module):
    """BasicBlock whose first 3x3 conv up-samples x2 by a transposed convolution when ``upsample``."""

    def __init__(self, in_channels: int, out_channels: int, upsample: bool = False):
        super().__init__()
        if upsample:
            self.conv1: nn.Module = nn.ConvTranspose2d(
                in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=False
            )
        else:
            self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if upsample:
            self.shortcut = nn.Sequential(
                nn.ConvTranspose2d(in_channels, out_channels, 2, stride=2, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        elif in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class VisDecoder(nn.Module):
    """Reversed ResNet-34: features (B, C_in, h, w) → image (B, out_channels, h*stride, w*stride)."""

    def __init__(
        self,
        in_channels: int,
        feature_stride: int = 16,
        base_channels: int = 64,
        blocks: tuple[int, int, int, int] = REVERSED_RESNET34_BLOCKS,
        out_channels: int = 3,
    ):
        super().__init__()
        if not 4 <= feature_stride <= 32:
            raise ValueError(f"feature_stride must be in [4, 32], got {feature_stride}")
        n_up = math.ceil(math.log2(feature_stride))
        self.feature_stride = feature_stride
        widths = tuple(base_channels * m for m in (8, 4, 2, 1))
        stage_ups = n_up - 2  # the reversed stem up-samples twice
        self.input_proj = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        prev = widths[0]
        for i, (ch, n) in enumerate(zip(widths, blocks, strict=True)):
            up = i >= len(widths) - stage_ups
            stage = [UpBasicBlock(prev, ch, upsample=up)] + [UpBasicBlock(ch, ch) for _ in range(n - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            prev = ch
        self.stem_up = nn.Sequential(
            nn.ConvTranspose2d(prev, base_channels, 3, stride=2, padding=1, output_padding=1, bias=False),
            nn.BatchNorm2d(base_channels),
            nn.ReLU(inplace=True),
        )
        self.head = nn.ConvTranspose2d(base_channels, out_channels, 7, stride=2, padding=3, output_padding=1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.input_proj(features)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        image = self.head(self.stem_up(x))
        size = (features.shape[-2] * self.feature_stride, features.shape[-1] * self.feature_stride)
        if tuple(image.shape[-2:]) != size:  # a stride that is no power of two
            image = nn.functional.interpolate(image, size=size, mode="bilinear", align_corners=False)
        return image
