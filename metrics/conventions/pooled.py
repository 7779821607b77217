"""The pooled figure: one AUROC over the images and the pixels of all classes together (the figure a
Dinomaly issue asks about), instead of the mean of the per-class AUROCs."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from metrics.conventions.common import NAN
from metrics.conventions.registry import register_convention


def pooled_auroc(positives: Iterable[np.ndarray], negatives: Iterable[np.ndarray]) -> float:
    """AUROC of all ``positives`` against all ``negatives`` (arrays of several classes together), ties
    1/2: the pooled figure, not a mean of per-class AUROCs."""
    pos = np.concatenate([np.ravel(p) for p in positives]) if positives else np.empty(0)
    neg = np.sort(np.concatenate([np.ravel(n) for n in negatives])) if negatives else np.empty(0)
    if pos.size == 0 or neg.size == 0:
        return NAN
    below = np.searchsorted(neg, pos, side="left").astype(np.float64)
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((below + 0.5 * ties).sum() / (float(pos.size) * float(neg.size)))


@register_convention("pooled", order=4,
                     legend="one AUROC over all classes' images (pixels) together, not the mean of per-class AUROCs")
class Pooled:
    """Keeps every class's image scores and pixel scores until the end (4 bytes a pixel)."""

    def __init__(self, pool_size: int = 16):
        self.parts: dict[str, list[np.ndarray]] = {"img_pos": [], "img_neg": [], "px_pos": [], "px_neg": []}

    def add(self, category: str, labels, scores, masks, maps) -> None:
        self.parts["img_pos"].append(scores[labels])
        self.parts["img_neg"].append(scores[~labels])
        if masks.any():
            self.parts["px_pos"].append(maps[masks])
            self.parts["px_neg"].append(maps[~masks])

    def result(self) -> dict:
        p = self.parts
        return {"mean": {"image_auroc": pooled_auroc(p["img_pos"], p["img_neg"]),
                         "pixel_auroc": pooled_auroc(p["px_pos"], p["px_neg"])}}
