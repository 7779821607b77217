"""PaDiM (Defard et al., ICPR 2021): one multivariate Gaussian per feature-map position.

* Embedding (sec. 3.1): the channels of stages ``layers`` of the frozen feature map (default 2-4 in
  the suite's numbering by stride 2^k: the paper's ResNet layer1-layer3), all on one grid (the
  suite's backbone resizes every stage to stride ``backbone.feature_stride``: 14x14 at 224 px by
  default, the paper's 56x56 with stride 4), then ``d`` randomly chosen dimensions (paper: 100 of
  ResNet18's 448; 550 of WideResNet-50's 1792). When the stages have at most ``d`` channels, all are
  kept.
* Fit (sec. 3.2): per position the mean and the unbiased covariance + ``epsilon`` I (0.01), from
  running float64 sums in one pass over the training set; the precision (inverse covariance) is
  stored, so the test needs no inversion.
* Map (sec. 3.3): the Mahalanobis distance per position, upsampled to the image (bilinear, as the
  suite's maps) and blurred with sigma 4; image score: the map's maximum (``image_score: max``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from models.feature_select import stage_channel_index
from models.losses import upsample_map
from models.smoothing import gaussian_blur
from rules import INT, ONE_OF, REAL, SEED


class PaDiM(nn.Module):
    RULES = {"layers": INT(1, 5, items=True), "d": INT(1), "epsilon": REAL(0, open_low=True), "sigma": REAL(0),
             "image_score": ONE_OF("max", "suite"), "seed": SEED}

    def __init__(self, stage_channels: list[int], available_stages: list[int], feature_size: tuple[int, int],
                 layers: tuple[int, ...] = (2, 3, 4), d: int = 100, epsilon: float = 0.01, sigma: float = 4.0,
                 image_score: str = "max", seed: int = 0):
        super().__init__()
        if image_score not in ("max", "suite"):
            raise ValueError(f"model.image_score={image_score!r} is unknown; choose max or suite")
        channels = stage_channel_index(stage_channels, available_stages, layers)
        if int(d) < channels.numel():
            gen = torch.Generator().manual_seed(int(seed))
            channels = channels[torch.randperm(channels.numel(), generator=gen)[: int(d)].sort().values]
        self.register_buffer("channels", channels)
        self.d = int(channels.numel())
        self.feature_size = tuple(int(s) for s in feature_size)
        self.positions = self.feature_size[0] * self.feature_size[1]
        self.epsilon, self.sigma, self.image_score = float(epsilon), float(sigma), image_score
        # empty until the fit (a paper-size precision is gigabytes; task=complexity never allocates it)
        self.register_buffer("mean", torch.zeros(0, self.d))
        self.register_buffer("precision", torch.zeros(0, self.d, self.d))

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) → (B, h*w, d)."""
        x = features.index_select(1, self.channels.to(features.device)).float()
        if x.shape[-2] * x.shape[-1] != self.positions:
            raise ValueError(f"PaDiM was built for a {self.feature_size} grid, got {tuple(x.shape[-2:])}")
        return x.flatten(2).transpose(1, 2)

    @torch.no_grad()
    def fit(self, batches: Iterable[torch.Tensor]) -> dict:
        """One pass of float64 sums (shifted by the first batch's mean for accuracy) → mean, precision."""
        n, shift, s1, s2 = 0, None, None, None
        for f in batches:
            x = self.embed(f).double()
            if shift is None:
                shift = x.mean(dim=0)
                s1 = torch.zeros_like(shift)
                s2 = torch.zeros(self.positions, self.d, self.d, dtype=torch.float64, device=x.device)
            x = x - shift
            s1 += x.sum(dim=0)
            s2 += torch.einsum("bpd,bpe->pde", x, x)
            n += x.shape[0]
        if n < 2:
            raise ValueError(f"PaDiM needs at least 2 training images to estimate a covariance, got {n}")
        mu = s1 / n
        cov = (s2 - n * mu[:, :, None] * mu[:, None, :]) / (n - 1)
        cov += self.epsilon * torch.eye(self.d, dtype=cov.dtype, device=cov.device)
        self.mean = (mu + shift).float()
        self.precision = torch.linalg.inv(cov).float()
        return {"train_images": n, "positions": self.positions, "dims": self.d}

    def score(self, features: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance per position, (B, 1, h, w)."""
        b = features.shape[0]
        if self.precision.shape[0] == 0:
            raise RuntimeError("PaDiM has no fitted Gaussians: fit it first (task=fit)")
        delta = self.embed(features) - self.mean  # (B, P, d)
        y = torch.einsum("bpd,pde->bpe", delta, self.precision)
        dist = (y * delta).sum(dim=2).clamp_min(0).sqrt()
        return dist.view(b, 1, *self.feature_size)

    def anomaly_map(self, rec, size) -> torch.Tensor:
        return gaussian_blur(upsample_map(rec, size), self.sigma)

    def image_scores(self, rec, amap) -> torch.Tensor | None:
        return amap.flatten(1).amax(dim=1) if self.image_score == "max" else None

    def stored_numbers(self) -> dict:
        """Per position a mean (d) and a d x d precision: positions * (d + d^2) numbers."""
        return {"stored_numbers": self.positions * (self.d + self.d * self.d), "positions": self.positions,
                "dims": self.d,
                "stored_note": f"{self.positions} positions x (mean {self.d} + covariance {self.d}x{self.d})"}

    def probe(self) -> PaDiM:
        """A copy whose statistics are meta tensors (FLOPs without the memory)."""
        copy = PaDiM.__new__(PaDiM)
        nn.Module.__init__(copy)
        copy.__dict__.update({k: v for k, v in self.__dict__.items() if not k.startswith("_")})
        copy.register_buffer("channels", self.channels.to("meta"))
        copy.register_buffer("mean", torch.empty(self.positions, self.d, device="meta"))
        copy.register_buffer("precision", torch.empty(self.positions, self.d, self.d, device="meta"))
        return copy

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("mean", "precision"):  # sized by the fit
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name], device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
