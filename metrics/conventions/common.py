"""Pieces the conventions share: their image scores, the official AUROC flip, PRO at given thresholds,
and ``PerClass``, the collector of a convention computed class by class and averaged over classes.

Inputs per class: ``labels`` (N, 0/1), ``scores`` (N, the suite's image score), ``masks`` (N x H x W,
0/1: the readers binarise ``> 0`` at load, so the ``> 0`` and ``> 0.5`` binarisations of the
repositories agree) and ``maps`` (N x H x W float, at image size). Values are fractions (0..1).
torch and scikit-learn load when a value is computed: the reports read the conventions' legends alone.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from metrics.compute import mean_metrics
from metrics.registry import mad_members

NAN = float("nan")
#: the seven metrics the published evaluators report (those ADer's mAD averages), in the suite's order
ALL: tuple[str, ...] = mad_members()


def pooled_max_scores(maps: np.ndarray, pool_size: int = 16) -> np.ndarray:
    """Max of the ``pool_size`` x ``pool_size`` stride-1 average-pooled map of each image (official
    ``EvalImageMax.encode_pred``, ADer ``Evaluator.run``'s ``pr_sp_max`` with ``pooling_ks``)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[:, None]
    k = min(pool_size, t.shape[-1], t.shape[-2])
    return F.avg_pool2d(t, k, stride=1).flatten(1).amax(dim=1).numpy()


def top_ratio_scores(maps: np.ndarray, ratio: float = 0.01) -> np.ndarray:
    """Mean of the ``int(H*W*ratio)`` largest values of each map (Dinomaly ``evaluation_batch`` with
    ``max_ratio``; at least one value, where Dinomaly would average an empty slice)."""
    flat = np.asarray(maps, dtype=np.float32).reshape(len(maps), -1)
    k = max(1, int(flat.shape[1] * ratio))
    return np.partition(flat, flat.shape[1] - k, axis=1)[:, -k:].mean(axis=1)


def flipped(value: float) -> float:
    """The official ``eval_auc``: an AUROC below 0.5 is reported as ``1 - AUROC``."""
    return 1.0 - value if value < 0.5 else value


def two_classes(y: np.ndarray) -> bool:
    return 0 < int(np.count_nonzero(y)) < y.size


def auroc(y, s) -> float:
    """scikit-learn's AUROC, nan with a single class."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if two_classes(np.asarray(y)) else NAN


def region_weights(masks: np.ndarray) -> np.ndarray:
    """Per pixel ``1 / size of its region`` (8-connected, per image; 0 off the mask)."""
    weights = np.zeros(masks.shape, dtype=np.float64)
    for i, mask in enumerate(masks):
        lab, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
        if n:
            sizes = np.bincount(lab.ravel())
            w = np.zeros(n + 1)
            w[1:] = 1.0 / sizes[1:]
            weights[i] = w[lab]
    return weights


def pro_fpr_above(masks: np.ndarray, maps: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(PRO, FPR) of the prediction ``map > t`` at each threshold: the mean over regions of each region's
    covered fraction, and the fraction of normal pixels above ``t`` (vectorised by sorting once)."""
    m = masks.astype(bool)
    w = region_weights(m)[m]
    n_regions = w.sum()
    pos = maps[m]
    order = np.argsort(pos, kind="stable")
    pos, w = pos[order], w[order]
    above_w = np.append(np.cumsum(w[::-1])[::-1], 0.0)  # weight of pos[i:]
    neg = np.sort(maps[~m])
    pro = above_w[np.searchsorted(pos, thresholds, side="right")] / n_regions
    fpr = (neg.size - np.searchsorted(neg, thresholds, side="right")) / neg.size
    return pro, fpr


class PerClass:
    """The collector of a convention computed per class: ``values(labels, scores, masks, maps)`` each
    class, then ``{"mean": the mean over classes, "per_class": ...}``. Nothing is kept between classes
    but the values."""

    def __init__(self, pool_size: int = 16):
        self.pool_size = int(pool_size)
        self.per_class: dict[str, dict[str, float]] = {}

    def values(self, labels, scores, masks, maps) -> dict[str, float]:
        raise NotImplementedError

    def add(self, category: str, labels, scores, masks, maps) -> None:
        self.per_class[category] = self.values(labels, scores, masks, maps)

    def result(self) -> dict:
        return {"mean": mean_metrics(self.per_class), "per_class": self.per_class}
