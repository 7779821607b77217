"""Dinomaly's evaluation: guojiajeremy/Dinomaly ``utils.py`` (``evaluation_batch``, ``compute_pro``,
``f1_score_max``) as ``dinomaly_mvtec_uni.py`` calls it (``max_ratio=0.01``)."""

from __future__ import annotations

import numpy as np

from metrics.compute import class_metrics
from metrics.conventions.common import ALL, NAN, PerClass, auroc, pro_fpr_above, top_ratio_scores
from metrics.conventions.registry import register_convention


def dinomaly_aupro(masks, maps, num_th: int = 200) -> float:
    """Dinomaly ``utils.py`` ``compute_pro``: thresholds ``np.arange(min, max, (max - min) / num_th)``,
    prediction ``map > t``, the points with FPR < 0.3 kept, their FPRs divided by the largest of them,
    ``sklearn.metrics.auc``. (0, 0) is not on the curve, and the normalisation is the largest FPR the
    grid reaches below 0.3, not 0.3."""
    from sklearn.metrics import auc

    m = np.asarray(masks).astype(bool)
    a = np.asarray(maps, dtype=np.float32)
    if not m.any() or m.all():
        return NAN
    lo, hi = a.min(), a.max()
    thresholds = np.arange(lo, hi, (hi - lo) / num_th)
    pro, fpr = pro_fpr_above(m, a, thresholds)
    keep = fpr < 0.3
    if keep.sum() < 2 or fpr[keep].max() == 0:
        return NAN
    return float(auc(fpr[keep] / fpr[keep].max(), pro[keep]))


def _dinomaly_f1_max(y, s) -> float:
    """Dinomaly ``f1_score_max``: 2PR/(P+R+1e-7) over ``precision_recall_curve`` without its last point."""
    from sklearn.metrics import precision_recall_curve

    if not np.asarray(y).any():
        return NAN
    p, r, _ = precision_recall_curve(y, s)
    return float((2 * p * r / (p + r + 1e-7))[:-1].max())


def dinomaly(labels, masks, maps, *, max_ratio: float = 0.01, num_th: int = 200) -> dict[str, float]:
    """guojiajeremy/Dinomaly ``utils.py`` ``evaluation_batch`` (``max_ratio=0.01`` in
    ``dinomaly_mvtec_uni.py``): image score = mean of the top 1% of the map (``top_ratio_scores``),
    masks ``.bool()``, AUROC/AP by scikit-learn, F1-max by ``_dinomaly_f1_max``, AUPRO
    by ``dinomaly_aupro``. Not flipped. (Its maps, Gaussian-blurred and at 256 px, are its model's;
    here the suite's maps are scored.)"""
    from sklearn.metrics import average_precision_score

    y = np.asarray(labels).astype(bool)
    m = np.asarray(masks).astype(bool)
    a = np.asarray(maps, dtype=np.float32)
    s = top_ratio_scores(a, max_ratio)
    # pixel AUROC / AP / F1-max: the suite's exact functions, equal to scikit-learn's on all pixels (F1-max
    # to within the 1e-7 Dinomaly adds to its denominator), without three sorts of every pixel
    pixel = class_metrics(["pixel_auroc", "pixel_ap", "pixel_f1_max"], None, None, m, a)
    out = {"image_auroc": auroc(y, s),
           "image_ap": float(average_precision_score(y, s)) if y.any() else NAN,
           "image_f1_max": _dinomaly_f1_max(y, s),
           **pixel,
           "pixel_aupro": dinomaly_aupro(m, a, num_th)}
    return {k: out[k] for k in ALL}


@register_convention("dinomaly", order=2, legend="Dinomaly utils.py, image score = mean of the top 1% of the map, "
                     "AUPRO at 200 thresholds divided by the largest FPR below 0.3")
class Dinomaly(PerClass):
    def values(self, labels, scores, masks, maps) -> dict[str, float]:
        return dinomaly(labels, masks, maps)
