"""Detectors: the pieces of one anomaly detector wired together.

``FeatureDetector``: frozen backbone features → reconstruction model → loss / anomaly map
(UniAD and the C.1 baselines). ``ImageDetector``: the reconstruction target is the image itself
(Metaformer autoencoder A). Both expose the same four steps so one trainer drives them:
``target(images)``, ``reconstruct(target)``, ``loss(target, rec)``, ``anomaly_map(target, rec, size)``.
"""

import torch
from torch import nn

from models.losses import MSELoss, ReconstructionLoss, upsample_map


class FeatureDetector(nn.Module):
    def __init__(self, backbone: nn.Module, reconstruction: nn.Module, loss: ReconstructionLoss):
        super().__init__()
        self.backbone = backbone
        self.reconstruction = reconstruction
        self.criterion = loss

    @property
    def frozen_target(self) -> bool:
        """True when the target of an image never changes (the frozen-feature cache may be used)."""
        return bool(getattr(self.backbone, "frozen", False))

    def target(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    def reconstruct(self, target: torch.Tensor) -> torch.Tensor:
        return self.reconstruction(target)

    def loss(self, target, rec):
        return self.criterion(target, rec)

    def anomaly_map(self, target, rec, size):
        return upsample_map(self.criterion.anomaly_map(target, rec), size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images → anomaly map at image size."""
        target = self.target(images)
        return self.anomaly_map(target, self.reconstruct(target), images.shape[-2:])


class ImageDetector(nn.Module):
    """Image reconstruction (Metaformer autoencoder A): map = per-pixel L2 error over RGB."""

    frozen_target = False

    def __init__(self, reconstruction: nn.Module, loss: ReconstructionLoss | None = None):
        super().__init__()
        self.reconstruction = reconstruction
        self.criterion = loss or MSELoss()

    def target(self, images):
        return images

    def reconstruct(self, target):
        return self.reconstruction(target)

    def loss(self, target, rec):
        return self.criterion(target, rec)

    def anomaly_map(self, target, rec, size):
        return upsample_map(self.criterion.anomaly_map(target, rec), size)

    def forward(self, images):
        return self.anomaly_map(images, self.reconstruct(images), images.shape[-2:])
