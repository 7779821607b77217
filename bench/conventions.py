"""The metrics as each published convention defines them, from the same maps (``eval.conventions``).

The suite's own metrics (``bench.metrics``) are exact: every distinct score a threshold, AUROC never
flipped, AUPRO integrated to FPR 0.3 and divided by 0.3, the image score the max of the 16x16
average-pooled map, the mean over classes. Published UniAD figures come from code that differs in
each of these; each function below follows one repository (read, not copied) and says where:

* ``official``: zhiyuanyou/UniAD ``utils/eval_helper.py`` (``EvalImageMax``, ``EvalPerPixelAUC``,
  ``performances``).
* ``ader``: zhangzjn/ADer ``util/metric.py`` (``Evaluator.run``) with the UniAD benchmark's settings
  (``configs/benchmark/uniad/uniad_256_100e.py``: ``pooling_ks=[16, 16]``, ``use_adeval=True``, ADEval's
  ``nstrips=50``); pixel AUROC/AP/AUPRO through ADEval (``adeval/iterative.py`` ``EvalAccumulator``).
* ``dinomaly``: guojiajeremy/Dinomaly ``utils.py`` (``evaluation_batch``, ``compute_pro``,
  ``f1_score_max``) as ``dinomaly_mvtec_uni.py`` calls it (``max_ratio=0.01``).
* ``anomalib``: open-edge-platform/anomalib >= 2.3 ``src/anomalib/metrics/`` (``aupro.py`` ``_AUPRO``,
  ``auroc.py``, ``f1_score.py``).
* ``pooled``: one AUROC over the images and the pixels of all classes together (the figure a Dinomaly
  issue asks about), instead of the mean of the per-class AUROCs.

Inputs per class: ``labels`` (N, 0/1), ``scores`` (N, the suite's image score), ``masks`` (N x H x W,
0/1: the readers binarise ``> 0`` at load, so the ``> 0`` and ``> 0.5`` binarisations of the
repositories agree) and ``maps`` (N x H x W float, at image size). Values are fractions (0..1).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score

from bench.metrics import class_metrics, mean_metrics

CONVENTIONS: tuple[str, ...] = ("official", "ader", "dinomaly", "anomalib", "pooled")
NAN = float("nan")
ALL = ("image_auroc", "image_ap", "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro")
LEGEND = {
    "ours": "exact (every distinct score a threshold), AUROC not flipped, AUPRO to FPR 0.3 / 0.3, image score "
            "= max of the 16x16 average-pooled map, mean over classes",
    "official": "official UniAD utils/eval_helper.py: AUROC flipped when below 0.5 (image and pixel), image "
                "label from the mask, image score = max of the 16x16 average-pooled map",
    "ader": "ADer util/metric.py with its UniAD settings: pixel AUROC/AP/AUPRO from ADEval's 50-bin "
            "histograms (AP as the trapezoid under the binned PR curve), pixel F1-max on per-class min-max "
            "normalised maps at 21 thresholds, image metrics exact on the 16x16 pooled max",
    "dinomaly": "Dinomaly utils.py: image score = mean of the top 1% of the map, AUPRO at 200 thresholds "
                "divided by the largest FPR below 0.3",
    "anomalib": "anomalib >= 2.3 metrics on the same maps and scores: exact, AUPRO to FPR 0.3 / 0.3 "
                "(its post-processor's normalisation is not applied)",
    "pooled": "one AUROC over all classes' images (pixels) together, not the mean of per-class AUROCs",
}


# ----------------------------------------------------------------------------------------------
# shared pieces
# ----------------------------------------------------------------------------------------------


def pooled_max_scores(maps: np.ndarray, pool_size: int = 16) -> np.ndarray:
    """Max of the ``pool_size`` x ``pool_size`` stride-1 average-pooled map of each image (official
    ``EvalImageMax.encode_pred``, ADer ``Evaluator.run``'s ``pr_sp_max`` with ``pooling_ks``)."""
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


def _two_classes(y: np.ndarray) -> bool:
    return 0 < int(np.count_nonzero(y)) < y.size


def _auroc(y, s) -> float:
    return float(roc_auc_score(y, s)) if _two_classes(np.asarray(y)) else NAN


def _region_weights(masks: np.ndarray) -> np.ndarray:
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


def _pro_fpr_above(masks: np.ndarray, maps: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(PRO, FPR) of the prediction ``map > t`` at each threshold: the mean over regions of each region's
    covered fraction, and the fraction of normal pixels above ``t`` (vectorised by sorting once)."""
    m = masks.astype(bool)
    w = _region_weights(m)[m]
    n_regions = w.sum()
    pos = maps[m]
    order = np.argsort(pos, kind="stable")
    pos, w = pos[order], w[order]
    above_w = np.append(np.cumsum(w[::-1])[::-1], 0.0)  # weight of pos[i:]
    neg = np.sort(maps[~m])
    pro = above_w[np.searchsorted(pos, thresholds, side="right")] / n_regions
    fpr = (neg.size - np.searchsorted(neg, thresholds, side="right")) / neg.size
    return pro, fpr


# ----------------------------------------------------------------------------------------------
# official UniAD
# ----------------------------------------------------------------------------------------------


def official(labels, masks, maps, *, pool_size: int = 16) -> dict[str, float]:
    """zhiyuanyou/UniAD ``utils/eval_helper.py``: ``EvalImageMax`` (image label = the mask has an anomalous
    pixel, score = max of the ``avgpool_size`` 16x16 pooled map) and ``EvalPerPixelAUC``, both through
    ``metrics.roc_curve`` + ``metrics.auc`` (exact) and flipped below 0.5. It reports AUROC only."""
    masks = np.asarray(masks).astype(bool)
    y = masks.reshape(len(masks), -1).any(axis=1)
    image = _auroc(y, pooled_max_scores(maps, pool_size))
    pixel = class_metrics(["pixel_auroc"], None, None, masks, maps)["pixel_auroc"]  # = roc_curve + auc
    return {"image_auroc": flipped(image) if math.isfinite(image) else NAN,
            "pixel_auroc": flipped(pixel) if math.isfinite(pixel) else NAN}


# ----------------------------------------------------------------------------------------------
# ADer (+ ADEval)
# ----------------------------------------------------------------------------------------------


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
    w = _region_weights(m)
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
    m = np.asarray(masks).astype(bool)
    y = m.reshape(len(m), -1).any(axis=1)
    s = pooled_max_scores(maps, pool_size)
    out = {"image_auroc": _auroc(y, s),
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
    except Exception:
        return "bench.conventions.adeval_pixel_metrics (ADEval's binning; the adeval package is not installed)"


# ----------------------------------------------------------------------------------------------
# Dinomaly
# ----------------------------------------------------------------------------------------------


def dinomaly_aupro(masks, maps, num_th: int = 200) -> float:
    """Dinomaly ``utils.py`` ``compute_pro``: thresholds ``np.arange(min, max, (max - min) / num_th)``,
    prediction ``map > t``, the points with FPR < 0.3 kept, their FPRs divided by the largest of them,
    ``sklearn.metrics.auc``. (0, 0) is not on the curve, and the normalisation is the largest FPR the
    grid reaches below 0.3, not 0.3."""
    m = np.asarray(masks).astype(bool)
    a = np.asarray(maps, dtype=np.float32)
    if not m.any() or m.all():
        return NAN
    lo, hi = a.min(), a.max()
    thresholds = np.arange(lo, hi, (hi - lo) / num_th)
    pro, fpr = _pro_fpr_above(m, a, thresholds)
    keep = fpr < 0.3
    if keep.sum() < 2 or fpr[keep].max() == 0:
        return NAN
    return float(auc(fpr[keep] / fpr[keep].max(), pro[keep]))


def _dinomaly_f1_max(y, s) -> float:
    """Dinomaly ``f1_score_max``: 2PR/(P+R+1e-7) over ``precision_recall_curve`` without its last point."""
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
    y = np.asarray(labels).astype(bool)
    m = np.asarray(masks).astype(bool)
    a = np.asarray(maps, dtype=np.float32)
    s = top_ratio_scores(a, max_ratio)
    # pixel AUROC / AP / F1-max: the suite's exact functions, equal to scikit-learn's on all pixels (F1-max
    # to within the 1e-7 Dinomaly adds to its denominator), without three sorts of every pixel
    pixel = class_metrics(["pixel_auroc", "pixel_ap", "pixel_f1_max"], None, None, m, a)
    out = {"image_auroc": _auroc(y, s),
           "image_ap": float(average_precision_score(y, s)) if y.any() else NAN,
           "image_f1_max": _dinomaly_f1_max(y, s),
           **pixel,
           "pixel_aupro": dinomaly_aupro(m, a, num_th)}
    return {k: out[k] for k in ALL}


# ----------------------------------------------------------------------------------------------
# anomalib >= 2.3
# ----------------------------------------------------------------------------------------------


def anomalib(labels, scores, masks, maps) -> dict[str, float]:
    """open-edge-platform/anomalib >= 2.3 ``src/anomalib/metrics/``: ``AUROC`` / ``AUPR`` (torchmetrics,
    exact), ``F1Max`` (max over the exact PR curve) and ``_AUPRO.compute_pro`` (2.3's rewrite: one
    global sort, PRO = cumulative ``1 / region size`` over regions, duplicates merged, the curve cut at
    FPR 0.3 by linear interpolation, area divided by the last FPR, 0.3). On given maps and scores these
    are the suite's exact definitions, so the column shows that the two agree; earlier anomalib
    (``interp1d`` of per-region curves, divided by an averaged FPR end point) could exceed 1."""
    return class_metrics(ALL, labels, scores, masks, maps)


# ----------------------------------------------------------------------------------------------
# pooled over classes
# ----------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------
# per-class accumulation (called by bench.evaluate, one class at a time)
# ----------------------------------------------------------------------------------------------


class Conventions:
    """Collects each requested convention class by class; ``result()`` gives, per convention, the
    per-class values and their mean (``pooled``: the pooled values only). ``pooled`` keeps every
    class's pixel scores until the end (4 bytes a pixel); the others keep nothing between classes."""

    def __init__(self, names: Iterable[str], *, pool_size: int = 16):
        names = [names] if isinstance(names, str) else list(names)
        unknown = [n for n in names if n not in CONVENTIONS]
        if unknown:
            raise ValueError(f"eval.conventions: unknown {', '.join(map(repr, unknown))}; choose among "
                             f"{', '.join(CONVENTIONS)}")
        self.names = list(dict.fromkeys(names))
        self.pool_size = int(pool_size)
        self.per_class: dict[str, dict[str, dict[str, float]]] = {n: {} for n in self.names if n != "pooled"}
        self._pooled: dict[str, list[np.ndarray]] = {"img_pos": [], "img_neg": [], "px_pos": [], "px_neg": []}

    def add(self, category: str, labels, scores, masks, maps) -> None:
        labels = np.asarray(labels).astype(bool)
        masks = np.asarray(masks).astype(bool)
        maps = np.asarray(maps, dtype=np.float32)
        scores = np.asarray(scores)
        for name in self.per_class:
            if name == "official":
                values = official(labels, masks, maps, pool_size=self.pool_size)
            elif name == "ader":
                values = ader(labels, masks, maps, pool_size=self.pool_size)
            elif name == "dinomaly":
                values = dinomaly(labels, masks, maps)
            else:
                values = anomalib(labels, scores, masks, maps)
            self.per_class[name][category] = values
        if "pooled" in self.names:
            self._pooled["img_pos"].append(scores[labels])
            self._pooled["img_neg"].append(scores[~labels])
            if masks.any():
                self._pooled["px_pos"].append(maps[masks])
                self._pooled["px_neg"].append(maps[~masks])

    def result(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for name in self.names:
            if name == "pooled":
                p = self._pooled
                out[name] = {"mean": {"image_auroc": pooled_auroc(p["img_pos"], p["img_neg"]),
                                      "pixel_auroc": pooled_auroc(p["px_pos"], p["px_neg"])}}
            else:
                out[name] = {"mean": mean_metrics(self.per_class[name]), "per_class": self.per_class[name]}
        if "ader" in out:
            out["ader"]["backend"] = adeval_backend()
        return out


def conventions_from_config(eval_cfg: Mapping) -> Conventions | None:
    """The collector for ``eval.conventions`` (None when it is empty or absent)."""
    names = eval_cfg.get("conventions")
    if not names:
        return None
    return Conventions(list(names) if not isinstance(names, str) else [names],
                       pool_size=int(eval_cfg.get("pool_size") or 16))
