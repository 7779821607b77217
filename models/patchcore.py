"""PatchCore (Roth et al., CVPR 2022): a coreset memory bank of locally aware patch features.

* Patch features (sec. 3.1): the channels of two middle stages of the frozen feature map (default
  stages 3 and 4 in the suite's numbering by stride 2^k: WideResNet-50's layer2 and layer3), each
  location averaged over its ``patch_size`` x ``patch_size`` neighbourhood. The suite's backbone has
  already resized every stage to one grid (stride ``backbone.feature_stride``, bilinear), so "resize
  the deeper stage to the shallower one's grid" becomes "both on the configured grid": 14x14 at 224
  px with the default stride 16 (the same cached features UniAD reads);
  ``backbone.feature_stride=8`` gives the paper's 28x28. No channel projection: the two stages have
  at most a few hundred channels here (the paper reduces WideResNet-50's 1536 to 1024).
* Memory bank (sec. 3.2): greedy k-center coreset of all training patches, ``coreset_ratio`` of them
  (paper: 10%, 1% for its largest runs), selected on a ``projection_dim`` random projection.
* Scores (sec. 3.3): patch score = distance to the nearest bank element (chunked ``torch.cdist``,
  then recomputed exactly for the winner, so a patch that is in the bank scores exactly 0); image
  score = eq. 7: the max patch score s* times ``1 - softmax(d)_0``, where d are the distances of
  that patch to the ``num_neighbors`` bank elements nearest its own nearest element m* (m* first).
* Map: patch scores upsampled to the image (bilinear, as the suite's maps) and blurred with sigma 4.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from models.coreset import greedy_coreset
from models.feature_select import stage_channel_index
from models.losses import upsample_map
from models.smoothing import gaussian_blur
from rules import INT, ONE_OF, REAL, SEED


class PatchCore(nn.Module):
    RULES = {"layers": INT(1, 5, items=True), "patch_size": INT(1), "coreset_ratio": REAL(0, 1, open_low=True),
             "projection_dim": INT(1, null=True), "num_neighbors": INT(1), "sigma": REAL(0),
             "image_score": ONE_OF("reweighted", "max", "suite"), "query_chunk": INT(1), "bank_chunk": INT(1),
             "seed": SEED, "complexity_train_images": INT(1)}

    def __init__(self, stage_channels: list[int], available_stages: list[int], feature_size: tuple[int, int],
                 layers: tuple[int, ...] = (3, 4), patch_size: int = 3, coreset_ratio: float = 0.1,
                 projection_dim: int | None = 128, num_neighbors: int = 9, sigma: float = 4.0,
                 image_score: str = "reweighted", query_chunk: int = 2048, bank_chunk: int = 16384,
                 seed: int = 0, complexity_train_images: int = 3629):
        super().__init__()
        if not 0 < coreset_ratio <= 1:
            raise ValueError(f"model.coreset_ratio={coreset_ratio} must be in (0, 1]")
        if image_score not in ("reweighted", "max", "suite"):
            raise ValueError(f"model.image_score={image_score!r} is unknown; choose reweighted, max or suite")
        self.register_buffer("channels", stage_channel_index(stage_channels, available_stages, layers),
                             persistent=False)
        self.dim = int(self.channels.numel())
        self.feature_size = tuple(int(s) for s in feature_size)
        self.patch_size, self.coreset_ratio, self.projection_dim = int(patch_size), float(coreset_ratio), projection_dim
        self.num_neighbors, self.sigma, self.image_score = int(num_neighbors), float(sigma), image_score
        self.query_chunk, self.bank_chunk, self.seed = int(query_chunk), int(bank_chunk), int(seed)
        self.complexity_train_images = int(complexity_train_images)
        self.register_buffer("bank", torch.zeros(0, self.dim))

    # -- features -------------------------------------------------------------------------------
    def patch_features(self, features: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) frozen features → (B, h*w, dim) locally aware patch features."""
        x = features.index_select(1, self.channels.to(features.device)).float()
        if self.patch_size > 1:
            x = F.avg_pool2d(x, self.patch_size, stride=1, padding=self.patch_size // 2, count_include_pad=False)
        return x.flatten(2).transpose(1, 2)

    @torch.no_grad()
    def fit(self, batches: Iterable[torch.Tensor]) -> dict:
        """One pass: gather every training patch feature, keep a greedy coreset of them as the bank."""
        patches = torch.cat([self.patch_features(f).reshape(-1, self.dim) for f in batches])
        n_total = patches.shape[0]
        n_select = max(1, math.ceil(self.coreset_ratio * n_total))
        if n_select < n_total:
            index = greedy_coreset(patches, n_select, projection_dim=self.projection_dim, seed=self.seed)
            patches = patches[index]
        self.bank = patches.contiguous()
        return {"train_patches": n_total, "bank_size": int(self.bank.shape[0])}

    # -- nearest neighbours ----------------------------------------------------------------------
    def nearest(self, queries: torch.Tensor, k: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
        """(Q, dim) → distances and indices (Q, k) of the k nearest bank rows, ascending (chunked)."""
        if self.bank.shape[0] == 0:
            raise RuntimeError("PatchCore has an empty memory bank: fit it first (task=fit)")
        k = min(k, self.bank.shape[0])
        out_d, out_i = [], []
        for q in queries.split(self.query_chunk):
            best_d = best_i = None
            for start in range(0, self.bank.shape[0], self.bank_chunk):
                d = torch.cdist(q, self.bank[start : start + self.bank_chunk])
                v, i = d.topk(min(k, d.shape[1]), dim=1, largest=False)
                i = i + start
                if best_d is not None:
                    v, order = torch.cat([best_d, v], 1).topk(k, dim=1, largest=False)
                    i = torch.cat([best_i, i], 1).gather(1, order)
                best_d, best_i = v, i
            out_d.append(best_d)
            out_i.append(best_i)
        return torch.cat(out_d), torch.cat(out_i)

    def score(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Patch scores (B, 1, h, w), nearest bank index (B, h*w) and patch features (B, h*w, dim)."""
        b, _, h, w = features.shape
        patches = self.patch_features(features)
        flat = patches.reshape(-1, self.dim)
        _, idx = self.nearest(flat)
        idx = idx[:, 0]
        dist = (flat - self.bank[idx]).norm(dim=1)  # exact: 0 for a patch that is in the bank
        return dist.view(b, 1, h, w), idx.view(b, h * w), patches

    def anomaly_map(self, rec, size) -> torch.Tensor:
        return gaussian_blur(upsample_map(rec[0], size), self.sigma)

    def image_scores(self, rec, amap) -> torch.Tensor | None:
        """Eq. 7 (``reweighted``), the max patch score (``max``), or None: the suite's pooled max."""
        scores, idx, patches = rec
        flat = scores.flatten(1)
        s_star, p_star = flat.max(dim=1)
        if self.image_score == "max":
            return s_star
        if self.image_score == "suite":
            return None
        rows = torch.arange(flat.shape[0], device=flat.device)
        m_test = patches[rows, p_star]  # (B, dim)
        m_star = self.bank[idx[rows, p_star]]
        _, support = self.nearest(m_star, k=self.num_neighbors)  # m* itself first (distance 0)
        support[:, 0] = idx[rows, p_star]
        d = (m_test[:, None, :] - self.bank[support]).norm(dim=2)  # (B, b)
        weight = 1 - torch.softmax(d, dim=1)[:, 0]
        return weight * s_star

    # -- what it stores ---------------------------------------------------------------------------
    def stored_numbers(self) -> dict:
        """Bank rows x dims; before a fit, the bank an MVTec-size training set would give."""
        h, w = self.feature_size
        rows = self.bank.shape[0] or math.ceil(self.coreset_ratio * self.complexity_train_images * h * w)
        return {"stored_numbers": rows * self.dim, "bank_size": rows, "bank_dim": self.dim,
                "bank_fitted": bool(self.bank.shape[0]),
                "stored_note": (f"memory bank {rows} x {self.dim} patch features"
                                + ("" if self.bank.shape[0] else
                                   f" (not fitted: {self.coreset_ratio:g} of {self.complexity_train_images}"
                                   f" training images x {h * w} patches)"))}

    def probe(self) -> PatchCore:
        """A copy whose bank is a meta tensor of the counted size (FLOPs without the memory)."""
        copy = PatchCore.__new__(PatchCore)
        nn.Module.__init__(copy)
        copy.__dict__.update({k: v for k, v in self.__dict__.items() if not k.startswith("_")})
        copy.register_buffer("channels", self.channels.to("meta"), persistent=False)
        copy.register_buffer("bank", torch.empty(self.stored_numbers()["bank_size"], self.dim, device="meta"))
        return copy

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "bank"
        if key in state_dict:  # the bank's size is only known after a fit
            self.bank = torch.empty_like(state_dict[key], device=self.bank.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
