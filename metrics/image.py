"""The image-level metrics: ``labels`` (0/1 per image, 1 = anomalous) and ``scores`` (one float per image,
higher = more anomalous), by scikit-learn's exact curves (every distinct score a threshold, an image
anomalous when ``score >= t``). Each is one row of ``metrics.registry``."""

from __future__ import annotations

import numpy as np

from metrics.inputs import image_inputs, single_class
from metrics.registry import register_metric

NAN = float("nan")


@register_metric("image_auroc", level="image", label="image AUROC", short="Det.", order=0, mad=True,
                 definition="image-level AUROC")
def image_auroc(labels, scores) -> float:
    """Image-level area under the ROC curve.

    ``sklearn.metrics.roc_auc_score(labels, scores)``: the probability that a random anomalous image
    scores higher than a random normal one, ties counting 1/2 (the trapezoid under the ROC curve
    through every distinct score). A value below 0.5 is returned as is, never flipped to ``1 - v``.
    Returns nan when the labels hold only one class (AUROC undefined).
    """
    from sklearn.metrics import roc_auc_score

    y, s = image_inputs(labels, scores)
    if single_class(y):
        return NAN
    return float(roc_auc_score(y, s))


@register_metric("image_ap", level="image", label="image AP", order=2, mad=True,
                 definition="image-level average precision")
def image_ap(labels, scores) -> float:
    """Image-level average precision.

    ``sklearn.metrics.average_precision_score(labels, scores)``:
    ``AP = sum_n (R_n - R_{n-1}) * P_n`` over the thresholds ``t_n`` = distinct scores in decreasing
    order, with ``P_n, R_n`` the precision and recall of ``score >= t_n`` and ``R_0 = 0`` (a step
    function, no interpolation). Returns nan when there is no anomalous image.
    """
    from sklearn.metrics import average_precision_score

    y, s = image_inputs(labels, scores)
    if not y.any():
        return NAN
    return float(average_precision_score(y, s))


@register_metric("image_f1_max", level="image", label="image F1-max", order=3, mad=True,
                 definition="image-level maximal F1 over thresholds")
def image_f1_max(labels, scores) -> float:
    """Image-level maximal F1 score.

    ``max_t F1(t)`` with ``F1 = 2 P R / (P + R)`` (0 where ``P + R = 0``) evaluated at every point of
    ``sklearn.metrics.precision_recall_curve(labels, scores)``, i.e. at every distinct score used as
    the threshold ``score >= t``. Returns nan when there is no anomalous image.
    """
    from sklearn.metrics import precision_recall_curve

    y, s = image_inputs(labels, scores)
    if not y.any():
        return NAN
    precision, recall, _ = precision_recall_curve(y, s)
    denom = precision + recall
    f1 = np.divide(2.0 * precision * recall, denom, out=np.zeros_like(denom, dtype=np.float64), where=denom > 0)
    return float(f1.max())
