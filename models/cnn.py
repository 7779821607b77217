"""CNN feature-reconstruction baseline (UniAD supplementary C.1 "CNN", with the C.3 assistant modules).

C.1: "CNN is designed based on the ResNet-34 by revising the followings. 1) We remove the operations
before stage-1 (a 7x7 convolutional layer followed by batch normalization, ReLU activation, and
max-pooling). 2) All strides from stage-1 to stage-4 are 1, meaning the size of the feature map is the
same. 3) The channel dimensions from stage-1 to stage-4 are respectively C, C/2, C/2, and C, where C is
the reduced channel dimension that is 256."

Pipeline (C.3, "1x1 convolution for CNN", no tokenization): features (B, C_org, H, W) → [feature
jitter on the channels-last view, training only, ``fj=True``] → 1x1 conv C_org→C → ResNet-34 stages
of BasicBlocks (3, 4, 6, 3 blocks; channels C, C/2, C/2, C; stride 1) → 1x1 conv C→C_org → f_rec.

BasicBlocks are ResNet's: 3x3 conv + BN + ReLU + 3x3 conv + BN, identity shortcut, or a 1x1 conv + BN
projection shortcut where the channel count changes (first blocks of stages 2 and 4), then ReLU.
Convolutions followed by BN have no bias (as torchvision); the two 1x1 channel projections do.
Xavier-uniform weights, zero biases for every conv (BN default), as the official initializer.
"""

from __future__ import annotations

import torch
from torch import nn

from models.init import xavier_init_
from models.jitter import JITTER_RULES, FeatureJitter
from rules import INT

RESNET34_BLOCKS = (3, 4, 6, 3)


class BasicBlock(nn.Module):
    """ResNet BasicBlock with stride 1."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=1, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


def make_stage(in_channels: int, out_channels: int, blocks: int) -> nn.Sequential:
    layers = [BasicBlock(in_channels, out_channels)]
    layers += [BasicBlock(out_channels, out_channels) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class CNNReconstruction(nn.Module):
    """C.1 CNN baseline: (B, C_org, H, W) features → reconstructed (B, C_org, H, W), any H, W."""

    RULES = {"hidden_dim": INT(2, multiple_of=2), **JITTER_RULES}  # stages use C/2 channels

    def __init__(
        self,
        in_channels: int,
        feature_size: tuple[int, int] | None = None,
        hidden_dim: int = 256,
        blocks: tuple[int, int, int, int] = RESNET34_BLOCKS,
        fj: bool = False,
        fj_scale: float = 20.0,
        fj_prob: float = 1.0,
    ):
        super().__init__()
        if hidden_dim % 2:
            raise ValueError(f"hidden_dim must be even (stages use C/2), got {hidden_dim}")
        self.feature_size = None if feature_size is None else tuple(feature_size)  # fully convolutional
        c, half = hidden_dim, hidden_dim // 2
        self.stage_channels = (c, half, half, c)
        self.jitter = FeatureJitter(fj_scale, fj_prob) if fj else None
        self.channel_reduction = nn.Conv2d(in_channels, c, 1)
        prev = c
        for i, (ch, n) in enumerate(zip(self.stage_channels, blocks, strict=True), start=1):
            self.add_module(f"layer{i}", make_stage(prev, ch, n))
            prev = ch
        self.channel_recovery = nn.Conv2d(c, in_channels, 1)
        xavier_init_(self)

    def forward(self, f_org: torch.Tensor) -> torch.Tensor:
        x = f_org
        if self.jitter is not None:
            x = self.jitter(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # jitter over channels
        x = self.channel_reduction(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.channel_recovery(x)
