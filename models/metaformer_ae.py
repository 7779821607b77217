"""Image-reconstruction autoencoder A of the Metaformer supplementary (second seed, Table 1).

"The encoder is made up of convolutional layers. The decoder is symmetric to the encoder and composed
of transposed convolutional layers. Each convolutional layer is followed by batch normalization, leaky
ReLU activation, and a downsampling/upsampling layer." Table 1 at a 256x256x3 input:

    Conv1 5x5 → 256²x32, MaxPool → 128²x32, Conv2 → 128²x64, MaxPool → 64²x64, Conv3 → 64²x128,
    MaxPool → 32²x128, Conv4 → 32²x256, MaxPool → 16²x256, Conv5 → 16²x512, MaxPool → 8²x512,
    AvgPool → 2²x512, Upsample 8x8 → 16²x512, T.Conv1 5x5 → 16²x256, Upsample → 32²x256,
    T.Conv2 → 32²x128, Upsample → 64²x128, T.Conv3 → 64²x64, Upsample → 128²x64, T.Conv4 → 128²x32,
    Upsample → 256²x32, T.Conv5 → 256²x3.

Choices left open by the table: 5x5 convs / transposed convs have stride 1 and padding 2 (size kept);
LeakyReLU slope 0.2; MaxPool 2x2 stride 2; nearest up-sampling; convs followed by BN carry no bias;
T.Conv5 is the output layer (bias, no BN, no activation: the output lives in the input's normalised
space). For another size S (divisible by 32) the average pool still gives 2x2 and the first
up-sampling goes to S/16 (x8 at S=256), so every later size is the table's scaled by S/256.
The anomaly map is the per-pixel L2 norm over RGB of ``image - recon`` (``anomaly_map``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

ENCODER_CHANNELS = (32, 64, 128, 256, 512)
DECODER_CHANNELS = (256, 128, 64, 32, 3)


def anomaly_map(image: torch.Tensor, recon: torch.Tensor) -> torch.Tensor:
    """Per-pixel L2 reconstruction error over channels: (B, C, S, S) x2 → (B, 1, S, S)."""
    return torch.linalg.vector_norm(image - recon, dim=1, keepdim=True)


class UpsampleTo(nn.Module):
    """Nearest up-sampling to ``input_size // divisor`` (the table's "Upsample 8x8" at S=256)."""

    def __init__(self, divisor: int = 16):
        super().__init__()
        self.divisor = divisor

    def forward(self, x: torch.Tensor, input_size: tuple[int, int]) -> torch.Tensor:
        size = (input_size[0] // self.divisor, input_size[1] // self.divisor)
        return F.interpolate(x, size=size, mode="nearest")


class MetaformerAE(nn.Module):
    """Autoencoder A: image (B, 3, S, S) → reconstruction (B, 3, S, S), S divisible by 32."""

    def __init__(self, in_channels: int = 3, negative_slope: float = 0.2):
        super().__init__()
        enc: list[nn.Module] = []
        prev = in_channels
        for ch in ENCODER_CHANNELS:
            enc.append(
                nn.Sequential(
                    nn.Conv2d(prev, ch, 5, stride=1, padding=2, bias=False),
                    nn.BatchNorm2d(ch),
                    nn.LeakyReLU(negative_slope, inplace=True),
                    nn.MaxPool2d(2, 2),
                )
            )
            prev = ch
        self.encoder = nn.ModuleList(enc)
        self.avgpool = nn.AdaptiveAvgPool2d(2)
        self.upsample = UpsampleTo(16)
        dec: list[nn.Module] = []
        out_channels = DECODER_CHANNELS[:-1] + (in_channels,)
        for i, ch in enumerate(out_channels):
            last = i == len(out_channels) - 1
            tconv = nn.ConvTranspose2d(prev, ch, 5, stride=1, padding=2, bias=last)
            if last:
                dec.append(nn.Sequential(tconv))
            else:
                dec.append(
                    nn.Sequential(
                        tconv,
                        nn.BatchNorm2d(ch),
                        nn.LeakyReLU(negative_slope, inplace=True),
                        nn.Upsample(scale_factor=2, mode="nearest"),
                    )
                )
            prev = ch
        self.decoder = nn.ModuleList(dec)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        size = image.shape[-2:]
        if size[0] % 32 or size[1] % 32:
            raise ValueError(f"MetaformerAE needs image sizes divisible by 32, got {tuple(size)}")
        x = image
        for stage in self.encoder:
            x = stage(x)
        x = self.upsample(self.avgpool(x), size)
        for stage in self.decoder:
            x = stage(x)
        return x

    anomaly_map = staticmethod(anomaly_map)
