"""anomalib's evaluation: open-edge-platform/anomalib >= 2.3 ``src/anomalib/metrics/`` (``aupro.py``
``_AUPRO``, ``auroc.py``, ``f1_score.py``)."""

from __future__ import annotations

from metrics.compute import class_metrics
from metrics.conventions.common import ALL, PerClass
from metrics.conventions.registry import register_convention


def anomalib(labels, scores, masks, maps) -> dict[str, float]:
    """open-edge-platform/anomalib >= 2.3 ``src/anomalib/metrics/``: ``AUROC`` / ``AUPR`` (torchmetrics,
    exact), ``F1Max`` (max over the exact PR curve) and ``_AUPRO.compute_pro`` (2.3's rewrite: one
    global sort, PRO = cumulative ``1 / region size`` over regions, duplicates merged, the curve cut at
    FPR 0.3 by linear interpolation, area divided by the last FPR, 0.3). On given maps and scores these
    are the suite's exact definitions, so the column shows that the two agree; earlier anomalib
    (``interp1d`` of per-region curves, divided by an averaged FPR end point) could exceed 1."""
    return class_metrics(ALL, labels, scores, masks, maps)


@register_convention("anomalib", order=3, legend="anomalib >= 2.3 metrics on the same maps and scores (exact)")
class Anomalib(PerClass):
    def values(self, labels, scores, masks, maps) -> dict[str, float]:
        return anomalib(labels, scores, masks, maps)
