"""Pixel AUROC, AP and F1-max: reducers of the engine's ranked pass (``metrics.class_maps``).

The pass visits the class's anomalous pixels in ascending score, chunk by chunk; for each anomalous
score ``s`` a chunk gives the normal pixels below it (``below``) and at or below it (``at_or_below``),
and at the threshold ``score >= s`` the true positives ``tp`` (anomalous pixels >= s, at least 1) and
the false positives ``fp`` (normal pixels >= s, each sampled one counting ``scale`` when subsampled).
Every value is over all pixels of all images of the class at once (never averaged per image) and
exact: every distinct score a threshold, ties entering together. Reducers use tensor methods only,
so reading the registry needs no torch.
"""

from __future__ import annotations

from metrics.pixel import pixel_value
from metrics.registry import register_metric

NAN = float("nan")


class AUROC:
    """Mann-Whitney count: pairs (anomalous, normal) won, ties 1/2, summed exactly in int64 (as 2x)."""

    def __init__(self, counts):
        self.counts, self.wins2 = counts, 0

    def update(self, chunk) -> None:
        self.wins2 = self.wins2 + (chunk.below + chunk.at_or_below).sum()

    def result(self) -> float:
        n_pos, n_neg = self.counts.n_pos, self.counts.n_neg
        return int(self.wins2) / (2.0 * n_pos * n_neg) if n_neg else NAN


class AP:
    """Mean over anomalous pixels of the precision at their score: ``sum_n (R_n - R_{n-1}) P_n``."""

    def __init__(self, counts):
        self.counts, self.total = counts, 0.0

    def update(self, chunk) -> None:
        self.total = self.total + (chunk.tp / (chunk.tp + chunk.fp)).sum()

    def result(self) -> float:
        return float(self.total) / self.counts.n_pos


class F1Max:
    """``max 2 TP / (TP + FP + n_anomalous)`` (= 2PR / (P + R)) over the anomalous scores, where it peaks."""

    def __init__(self, counts):
        self.counts, self.best = counts, None

    def update(self, chunk) -> None:
        value = (2.0 * chunk.tp / (chunk.tp + chunk.fp + self.counts.n_pos)).max()
        self.best = value if self.best is None else self.best.maximum(value)

    def result(self) -> float:
        return float(self.best)


@register_metric("pixel_auroc", level="pixel", label="pixel AUROC", short="Loc.", order=1, mad=True,
                 definition="pixel-level AUROC", reducer=AUROC)
def pixel_auroc(masks, maps) -> float:
    """Pixel-level area under the ROC curve over all pixels of all images.

    Equal (to rounding) to ``roc_auc_score(masks.ravel(), maps.ravel())``: the probability that a
    random anomalous pixel scores higher than a random normal pixel, ties counting 1/2, computed by
    binary search of each anomalous score among the sorted normal scores (no argsort).
    Not flipped below 0.5. nan when there is no anomalous or no normal pixel.
    """
    return pixel_value("pixel_auroc", masks, maps)


@register_metric("pixel_ap", level="pixel", label="pixel AP", order=4, mad=True,
                 definition="pixel-level average precision", reducer=AP)
def pixel_ap(masks, maps) -> float:
    """Pixel-level average precision over all pixels of all images.

    Equal (to rounding) to ``average_precision_score(masks.ravel(), maps.ravel())``:
    ``sum_n (R_n - R_{n-1}) * P_n`` over thresholds ``score >= t_n`` at the distinct scores in
    decreasing order (only thresholds at anomalous scores change recall, so only those are
    evaluated). nan when there is no anomalous pixel.
    """
    return pixel_value("pixel_ap", masks, maps)


@register_metric("pixel_f1_max", level="pixel", label="pixel F1-max", order=5, mad=True,
                 definition="pixel-level maximal F1 over thresholds", reducer=F1Max)
def pixel_f1_max(masks, maps) -> float:
    """Pixel-level maximal F1 over thresholds, over all pixels of all images.

    ``max_t 2 P(t) R(t) / (P(t) + R(t))`` for ``score >= t`` over all distinct scores ``t``; equal to
    the maximum of F1 along ``precision_recall_curve(masks.ravel(), maps.ravel())`` (the maximum is
    always attained at a threshold equal to an anomalous pixel's score, which is where it is
    evaluated). nan when there is no anomalous pixel.
    """
    return pixel_value("pixel_f1_max", masks, maps)
