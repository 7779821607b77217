"""ADer's evaluation: zhangzjn/ADer ``util/metric.py`` (``Evaluator.run``) with the UniAD benchmark's
settings (``configs/benchmark/uniad/uniad_256_100e.py``: ``pooling_ks=[16, 16]``, ``use_adeval=True``,
ADEval's ``nstrips=50``); pixel AUROC/AP/AUPRO through ADEval (``adeval/iterative.py``
``EvalAccumulator``)."""

from __future__ import annotations

import numpy as np

from metrics.conventions.common import ALL, NAN, PerClass, auroc, pooled_max_scores, region_weights
from metrics.conventions.registry import register_convention


def _adeval_bins(lo: float, hi: float, nstrips: int) -> np.ndarray:
    """ADEval ``_AccumulateStatCurve``'s edges: ``nstrips`` equal float32 strips on [lo, hi] plus an
    overflow bin on each side."""
    bins = np.linspace(0.0, 1.0, num=nstrips + 1, endpoint=True, dtype=np.float32) * (hi - lo) + lo
    inf = np.array([np.inf], dtype=np.float32)
    return np.concatenate([-inf, bins.astype(np.float32), inf])


def _trapz(y: np.ndarray, x: np.ndarray) -> float:
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0)) if x.size > 1 else 0.0


def adeval_pixel_metrics(masks, maps, nstrips: int = 50) -> dict[str, float]:
    """Pixel AUROC, AP and AUPRO as ADEval 1.1 computes them (``adeval/iterative.py`` ``EvalAccumulator``
    ``_auroc``, ``_aupr``, ``_aupro``; ``mem_effic.py`` ``_AccumulateStatCurve``, ``_pro_weight``,
    ``_trapezoid_intep``), with the bounds ADer passes (the class's map min and max).

    Pixels are counted into ``nstrips`` equal bins between the bounds; threshold ``t_i`` (a bin edge)
    predicts ``map >= t_i``, so pixels within one bin tie. AUROC and AP are trapezoids over the
    ``nstrips + 1`` points (AP: precision against recall, precision 1 where nothing is predicted); AUPRO
    weighs each region pixel ``1 / region size`` (8-connected), integrates PRO against FPR to 0.3 with
    the segment crossing 0.3 interpolated linearly, and divides by 0.3.
    """
    m = np.asarray(masks).astype(bool)
    a = np.asarray(maps, dtype=np.float32)
    if not m.any() or m.all():
        return {"pixel_auroc": NAN, "pixel_ap": NAN, "pixel_aupro": NAN}
    bins = _adeval_bins(float(a.min()), float(a.max()), nstrips)
    w = region_weights(m)
    pos_hist = np.histogram(a[m], bins)[0].astype(np.float64)
    neg_hist = np.histogram(a[~m], bins)[0].astype(np.float64)
    wpos_hist = np.histogram(a[m], bins, weights=w[m])[0]

    def curve(pos_h, neg_h):
        fn, tn = np.cumsum(pos_h)[:-1], np.cumsum(neg_h)[:-1]
        p, n = pos_h.sum(), neg_h.sum()
        return p - fn, n - tn, p, n  # tp, fp at each threshold (ascending)

    tp, fp, p, n = curve(pos_hist, neg_hist)
    tpr, fpr = tp / p, fp / n
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
    out = {"pixel_auroc": _trapz(tpr[::-1], fpr[::-1]), "pixel_ap": _trapz(precision[::-1], tpr[::-1])}
    wtp, _, wp, _ = curve(wpos_hist, neg_hist)
    pro = wtp / wp
    limit = 0.3
    low = fpr <= limit
    lo_pro, lo_fpr = pro[low][::-1], fpr[low][::-1]
    hi_pro, hi_fpr = pro[~low][::-1], fpr[~low][::-1]
    lo, hi, tot = _trapz(lo_pro, lo_fpr), _trapz(hi_pro, hi_fpr), _trapz(pro[::-1], fpr[::-1])
    if lo_fpr.size == 0 or hi_fpr.size == 0:
        out["pixel_aupro"] = lo / limit
        return out
    # ADEval _trapezoid_intep: the part of the crossing trapezoid left of FPR 0.3
    frac = (limit - lo_fpr[-1]) / (hi_fpr[0] - lo_fpr[-1])
    area, y1, y2 = tot - (lo + hi), lo_pro[-1], hi_pro[0]
    rect = y1 / (y1 + 0.5 * (y2 - y1)) if (y1 + y2) > 0 else 0.0
    out["pixel_aupro"] = (lo + area * rect * frac + area * (1 - rect) * frac * frac) / limit
    return out


def _adeval_package(masks, maps, nstrips: int) -> dict[str, float] | None:
    """The same three metrics from the real ``adeval`` package (the ``adeval`` extra), or None when it is
    not installed or fails (it has no answer when no threshold has an FPR on each side of 0.3).
    ADEval 1.1 calls ``np.trapz``, gone in NumPy 2.4: its modules get ``np.trapezoid`` under that name
    (a namespace of their own; numpy itself is left alone)."""
    try:
        from adeval import iterative, mem_effic
    except ImportError:
        return None
    import types

    if not hasattr(np, "trapz"):
        shim = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
        shim.trapz = np.trapezoid
        iterative.np = mem_effic.np = shim
    m = np.asarray(masks).astype(np.uint8)
    a = np.asarray(maps, dtype=np.float32)
    acc = iterative.EvalAccumulator(0.0, 1.0, float(a.min()), float(a.max()), skip_pixel_aupro=False,
                                    nstrips=nstrips)
    acc.add_anomap_batch(a, m)
    try:
        summary = acc.summary()
    except (IndexError, ZeroDivisionError):  # no threshold with FPR <= 0.3 (or none above): ADEval fails
        return None
    return {"pixel_auroc": float(summary["p_auroc"]), "pixel_ap": float(summary["p_aupr"]),
            "pixel_aupro": float(summary["p_aupro"])}


def ader_pixel_f1_max(masks, maps, eps: float = 1e-8) -> float:
    """ADer ``Evaluator.run`` ``mF1_max_px``: the class's maps min-max normalised, F1 of ``map > t`` for
    t = 0, 0.05, ..., 1 (21 thresholds) with ``eps`` in every denominator, the maximum."""
    m = np.asarray(masks).astype(bool)
    a = np.asarray(maps, dtype=np.float32)
    if not m.any():
        return NAN
    norm = (a - a.min()) / (a.max() - a.min())
    label = float(m.sum())
    best = 0.0
    for t in np.arange(0.0, 1.0 + 1e-3, 0.05):
        pred = norm > t
        inter = float(np.logical_and(m, pred).sum())
        precision = inter / (float(pred.sum()) + eps)
        recall = inter / (label + eps)
        best = max(best, 2 * precision * recall / (precision + recall + eps))
    return best


def _f1_max_finite(y, s) -> float:
    """ADer ``mF1_max_sp_max``: max of 2PR/(P+R) over ``precision_recall_curve``, non-finite dropped."""
    from sklearn.metrics import precision_recall_curve

    if not np.asarray(y).any():
        return NAN
    p, r, _ = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = 2 * p * r / (p + r)
    return float(np.max(f1[np.isfinite(f1)]))


def ader(labels, masks, maps, *, pool_size: int = 16, nstrips: int = 50, use_package: bool = True
         ) -> dict[str, float]:
    """zhangzjn/ADer ``util/metric.py`` ``Evaluator.run`` at its UniAD benchmark settings.

    Image label = the mask's max (``gt_sp``), score = max of the 16x16 pooled map (``pr_sp_max``);
    ``mAUROC_sp_max`` / ``mAP_sp_max`` by scikit-learn, ``mF1_max_sp_max`` by ``_f1_max_finite``.
    ``mAUROC_px``, ``mAP_px``, ``mAUPRO_px`` from ADEval (``use_adeval=True``, ``nstrips=50``): the
    ``adeval`` package when installed and ``use_package``, else ``adeval_pixel_metrics`` (the same
    binning). ``mF1_max_px`` by ``ader_pixel_f1_max``. Not flipped.
    """
    from sklearn.metrics import average_precision_score

    m = np.asarray(masks).astype(bool)
    y = m.reshape(len(m), -1).any(axis=1)
    s = pooled_max_scores(maps, pool_size)
    out = {"image_auroc": auroc(y, s),
           "image_ap": float(average_precision_score(y, s)) if y.any() else NAN,
           "image_f1_max": _f1_max_finite(y, s)}
    pixel = _adeval_package(m, maps, nstrips) if use_package else None
    out.update(pixel if pixel is not None else adeval_pixel_metrics(m, maps, nstrips))
    out["pixel_f1_max"] = ader_pixel_f1_max(m, maps)
    return {k: out[k] for k in ALL}


def adeval_backend() -> str:
    """What computes ADer's binned metrics here: the ``adeval`` package (with its version) or ours."""
    try:
        from importlib.metadata import version

        import adeval  # noqa: F401

        return f"adeval {version('adeval')}"
    except Exception:  # the text runs have recorded since this function lived in bench/conventions.py
        return "bench.conventions.adeval_pixel_metrics (ADEval's binning; the adeval package is not installed)"


@register_convention("ader", order=1, legend="ADer util/metric.py, pixel AUROC/AP/AUPRO from ADEval's 50-bin "
                     "histograms")
class Ader(PerClass):
    def values(self, labels, scores, masks, maps) -> dict[str, float]:
        return ader(labels, masks, maps, pool_size=self.pool_size)

    def result(self) -> dict:
        return {**super().result(), "backend": adeval_backend()}
