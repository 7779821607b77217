"""Detectors: the pieces of one anomaly detector wired together.

``FeatureDetector``: frozen backbone features → reconstruction model → loss / anomaly map
(UniAD and the C.1 baselines). ``ImageDetector``: the reconstruction target is the image itself
(Metaformer autoencoder A). ``StatisticsDetector``: frozen features → statistics fitted in one pass
(PaDiM, PatchCore). All three satisfy ``Detector``, so one trainer and one evaluation drive them:
``target(images)``, ``reconstruct(target)``, ``loss(target, rec)``, ``anomaly_map(target, rec, size)``,
``image_scores(target, rec, amap)``.
"""

from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import torch
from torch import nn

from models.losses import MSELoss, ReconstructionLoss, upsample_map


@runtime_checkable
class Detector(Protocol):
    """What training, the feature cache and evaluation use of a detector."""

    frozen_target: bool       # the target of an image never changes (the feature cache may hold it)
    fits_by_statistics: bool  # fitted in one pass (``fit_batches``), no optimiser, no loss

    def target(self, images: torch.Tensor) -> torch.Tensor: ...

    def reconstruct(self, target: torch.Tensor): ...

    def loss(self, target: torch.Tensor, rec) -> torch.Tensor: ...

    def anomaly_map(self, target: torch.Tensor, rec, size) -> torch.Tensor: ...

    def image_scores(self, target: torch.Tensor, rec, amap: torch.Tensor) -> torch.Tensor | None:
        """The method's own image scores, or None for the suite's (``eval.score`` of the pooled map)."""


class OnePassStatistics(Protocol):
    """A method fitted by statistics of the training features (``models.padim.PaDiM``,
    ``models.patchcore.PatchCore``), driven by ``StatisticsDetector``."""

    def fit(self, batches: Iterable[torch.Tensor]) -> dict:
        """Read every training feature map once; return figures of the fit (for the record)."""

    def score(self, features: torch.Tensor): ...

    def anomaly_map(self, scores, size) -> torch.Tensor: ...

    def image_scores(self, scores, amap: torch.Tensor) -> torch.Tensor | None: ...

    def stored_numbers(self) -> dict:
        """How many numbers the fitted statistics hold (Table S7's storage column)."""

    def probe(self) -> nn.Module:
        """A copy on the meta device, for counting FLOPs without data."""


class ReconstructionDetector(nn.Module):
    """A target reconstructed by a trained model; the map is the loss's per-position error at image size."""

    fits_by_statistics = False

    def __init__(self, reconstruction: nn.Module, loss: ReconstructionLoss, backbone: nn.Module | None = None):
        super().__init__()
        if backbone is not None:  # registered first: the order of state_dict and parameters() (optimiser state)
            self.backbone = backbone
        self.reconstruction = reconstruction
        self.criterion = loss

    def target(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def reconstruct(self, target: torch.Tensor) -> torch.Tensor:
        return self.reconstruction(target)

    def loss(self, target, rec):
        return self.criterion(target, rec)

    def anomaly_map(self, target, rec, size):
        return upsample_map(self.criterion.anomaly_map(target, rec), size)

    def image_scores(self, target, rec, amap) -> None:
        return None  # the suite's score of the map

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images → anomaly map at image size."""
        target = self.target(images)
        return self.anomaly_map(target, self.reconstruct(target), images.shape[-2:])


class FeatureDetector(ReconstructionDetector):
    """Frozen (or trained) backbone features reconstructed (UniAD and the C.1 baselines)."""

    def __init__(self, backbone: nn.Module, reconstruction: nn.Module, loss: ReconstructionLoss):
        super().__init__(reconstruction, loss, backbone)

    @property
    def frozen_target(self) -> bool:
        """True when the target of an image never changes (the frozen-feature cache may be used)."""
        return bool(getattr(self.backbone, "frozen", False))

    def target(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)


class ImageDetector(ReconstructionDetector):
    """Image reconstruction (Metaformer autoencoder A): map = per-pixel L2 error over RGB."""

    frozen_target = False

    def __init__(self, reconstruction: nn.Module, loss: ReconstructionLoss | None = None):
        super().__init__(reconstruction, loss or MSELoss())

    def target(self, images):
        return images


class StatisticsDetector(nn.Module):
    """Frozen features → statistics fitted in one pass, no optimiser (PaDiM, PatchCore).

    Same steps as ``FeatureDetector`` so evaluation treats it alike: ``reconstruct`` returns what the
    method's ``anomaly_map`` and ``image_scores`` need (nearest-neighbour distances, Mahalanobis
    distances), ``anomaly_map`` brings it to image size; ``fit_batches`` is the one pass over the
    training features that replaces training, and ``loss`` does not exist.
    """

    fits_by_statistics = True
    frozen_target = True

    def __init__(self, backbone: nn.Module, method: OnePassStatistics):
        super().__init__()
        if not getattr(backbone, "frozen", False):
            raise ValueError("PaDiM and PatchCore fit statistics of frozen features: set backbone.frozen=true")
        self.backbone = backbone
        self.method = method

    @property
    def reconstruction(self) -> nn.Module:
        """The fitted statistics (named as in ``FeatureDetector`` for code that counts its parts)."""
        return self.method

    def target(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone(images)

    # distances and Mahalanobis products stay in fp32 under any autocast (bf16 would blur the ranking)
    @torch.no_grad()
    def fit_batches(self, batches) -> dict:
        with torch.autocast(self.backbone_device.type, enabled=False):
            return self.method.fit(batches)

    @property
    def backbone_device(self) -> torch.device:
        return next(self.backbone.parameters()).device

    def reconstruct(self, target: torch.Tensor):
        with torch.autocast(target.device.type, enabled=False):
            return self.method.score(target.float())

    def loss(self, target, rec):
        raise RuntimeError("PaDiM and PatchCore have no training loss: they are fitted in one pass")

    def anomaly_map(self, target, rec, size):
        with torch.autocast(target.device.type, enabled=False):
            return self.method.anomaly_map(rec, size)

    def image_scores(self, target, rec, amap) -> torch.Tensor | None:
        """The method's own image score (PatchCore eq. 7, PaDiM max), or None for the suite's."""
        with torch.autocast(target.device.type, enabled=False):
            return self.method.image_scores(rec, amap)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        target = self.target(images)
        return self.anomaly_map(target, self.reconstruct(target), images.shape[-2:])
