"""Evaluation metrics of UniAD Bench (pure numpy / scipy / scikit-learn).

Image-level metrics take ``labels`` (0/1 per image, 1 = anomalous) and ``scores`` (one float per
image, higher = more anomalous). Pixel-level metrics take ``masks`` (N x H x W, bool or 0/1, 1 =
anomalous pixel; H x W and N x 1 x H x W are accepted too) and ``maps`` (same shape, float, higher =
more anomalous) and are computed over all pixels of all images of the arrays at once (never averaged
per image). Every metric is a threshold sweep over *all distinct scores*; scores are compared in
the dtype they are given in (float32 maps are never up-cast, so ties are exactly those of the
input), and a threshold ``t`` classifies a pixel/image as anomalous when ``score >= t``, so all
items with equal score change side together.

Pixel metrics are memory-conscious: they make one copy of the anomalous and one of the normal
pixels' scores (in the maps' own dtype), sort the normal ones in place and answer every threshold
with ``np.searchsorted``; no N x H x W float64 array and no full argsort are created.

``METRICS`` maps each name to its function, ``resolve_metrics`` validates a selection and
``class_metrics`` computes a selection for one class (sharing the sort between pixel metrics, with
an optional subsample of normal pixels); ``mean_metrics`` averages per-class results.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "check_normal_pixel_budget",
    "class_metrics",
    "image_ap",
    "image_auroc",
    "image_f1_max",
    "image_undefined_reason",
    "mean_metrics",
    "pixel_ap",
    "pixel_aupro",
    "pixel_auroc",
    "pixel_f1_max",
    "resolve_metrics",
]

NAN = float("nan")
#: 8-connectivity, as in the MVTec AD reference evaluation code (``np.ones((3, 3))``).
_STRUCTURE = np.ones((3, 3), dtype=bool)


# ----------------------------------------------------------------------------------------------
# image level
# ----------------------------------------------------------------------------------------------


def _image_inputs(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels).ravel()
    s = np.asarray(scores).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in size: {y.size} vs {s.size}")
    if y.dtype != bool:
        if y.size and not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be 0/1 (or bool)")
        y = y.astype(bool)
    if s.dtype.kind not in "fiu":
        raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
    if s.dtype.kind == "f" and np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y, s


def _single_class(y: np.ndarray) -> bool:
    return y.size == 0 or bool(y.all()) or not bool(y.any())


def image_auroc(labels, scores) -> float:
    """Image-level area under the ROC curve.

    ``sklearn.metrics.roc_auc_score(labels, scores)``: the probability that a random anomalous image
    scores higher than a random normal one, ties counting 1/2 (the trapezoid under the ROC curve
    through every distinct score). A value below 0.5 is returned as is, never flipped to ``1 - v``.
    Returns nan when the labels hold only one class (AUROC undefined).
    """
    y, s = _image_inputs(labels, scores)
    if _single_class(y):
        return NAN
    return float(roc_auc_score(y, s))


def image_ap(labels, scores) -> float:
    """Image-level average precision.

    ``sklearn.metrics.average_precision_score(labels, scores)``:
    ``AP = sum_n (R_n - R_{n-1}) * P_n`` over the thresholds ``t_n`` = distinct scores in decreasing
    order, with ``P_n, R_n`` the precision and recall of ``score >= t_n`` and ``R_0 = 0`` (a step
    function, no interpolation). Returns nan when there is no anomalous image.
    """
    y, s = _image_inputs(labels, scores)
    if not y.any():
        return NAN
    return float(average_precision_score(y, s))


def _f1_from_pr(precision: np.ndarray, recall: np.ndarray) -> float:
    denom = precision + recall
    f1 = np.divide(2.0 * precision * recall, denom, out=np.zeros_like(denom, dtype=np.float64),
                   where=denom > 0)
    return float(f1.max())


def image_f1_max(labels, scores) -> float:
    """Image-level maximal F1 score.

    ``max_t F1(t)`` with ``F1 = 2 P R / (P + R)`` (0 where ``P + R = 0``) evaluated at every point of
    ``sklearn.metrics.precision_recall_curve(labels, scores)``, i.e. at every distinct score used as
    the threshold ``score >= t``. Returns nan when there is no anomalous image.
    """
    y, s = _image_inputs(labels, scores)
    if not y.any():
        return NAN
    precision, recall, _ = precision_recall_curve(y, s)
    return _f1_from_pr(precision, recall)


# ----------------------------------------------------------------------------------------------
# pixel level: shared preparation
# ----------------------------------------------------------------------------------------------


def _pixel_inputs(masks, maps) -> tuple[np.ndarray, np.ndarray]:
    """Validated (bool mask, map) views of shape N x H x W; copies only a non-bool mask."""
    a = np.asarray(maps)
    m = np.asarray(masks)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if a.ndim == 2:
        a = a[None]
    if m.ndim == 2:
        m = m[None]
    if a.ndim != 3 or m.shape != a.shape:
        raise ValueError(f"masks and maps must be N x H x W of equal shapes, got {m.shape} and {a.shape}")
    if a.dtype.kind not in "fiu":
        raise ValueError(f"maps must be numeric, got dtype {a.dtype}")
    return binary_masks(m), a


def binary_masks(m: np.ndarray) -> np.ndarray:
    """A mask array as bool; only bool or 0/1 masks are accepted (readers binarise their datasets' values)."""
    if m.dtype == bool:
        return m
    nonzero = m != 0
    if np.any(m[nonzero] != 1):
        raise ValueError("masks must be bool or 0/1")
    return nonzero


@dataclass
class _Pixels:
    """Scores split by ground truth, ready for every pixel metric."""

    pos: np.ndarray  # scores of anomalous pixels, C order of the mask (aligned with ``region_w``)
    neg: np.ndarray  # scores of normal pixels (maybe a subsample), sorted ascending
    neg_scale: float  # normal pixels represented by each entry of ``neg`` (1 unless subsampled)
    region_w: np.ndarray | None = None  # per anomalous pixel 1 / (n_regions * region size)
    _pos_unique: tuple[np.ndarray, np.ndarray] | None = None

    def pos_unique(self) -> tuple[np.ndarray, np.ndarray]:
        """Distinct anomalous scores (ascending) and their counts."""
        if self._pos_unique is None:
            self._pos_unique = np.unique(self.pos, return_counts=True)
        return self._pos_unique


def _region_weights(m: np.ndarray) -> np.ndarray:
    """For each anomalous pixel (C order of ``m``), ``1 / (n_regions * size of its region)``.

    Regions are the 8-connected components of each image's mask, labelled image by image.
    """
    ids = np.empty(int(np.count_nonzero(m)), dtype=np.int64)
    pos_off = 0
    n_regions = 0
    for img in m:
        lab, n = ndimage.label(img, structure=_STRUCTURE)
        if n:
            img_ids = lab[img]
            ids[pos_off : pos_off + img_ids.size] = img_ids + n_regions
            pos_off += img_ids.size
            n_regions += n
    if n_regions == 0:
        return np.empty(0, dtype=np.float64)
    sizes = np.bincount(ids, minlength=n_regions + 1).astype(np.float64)
    return 1.0 / (n_regions * sizes[ids])


_CHUNK = 1 << 20


def _subsample(values: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A uniform random sample of ``k`` entries of ``values`` without replacement (seeded).

    Exact and memory-light: a multivariate hypergeometric draw splits ``k`` over chunks of 2**20
    entries, then each chunk is sampled without replacement, so no index array of the full size
    is ever built.
    """
    rng = np.random.default_rng(seed)
    starts = np.arange(0, values.size, _CHUNK)
    sizes = np.minimum(_CHUNK, values.size - starts)
    counts = rng.multivariate_hypergeometric(sizes, k)
    out = np.empty(k, dtype=values.dtype)
    filled = 0
    for start, size, count in zip(starts, sizes, counts, strict=True):
        if count:
            idx = rng.choice(int(size), size=int(count), replace=False)
            out[filled : filled + count] = values[start : start + size][idx]
            filled += count
    return out


def _prepare(masks, maps, *, regions: bool = False, normal_pixel_budget: int | None = None,
             seed: int = 0) -> _Pixels:
    m, a = _pixel_inputs(masks, maps)
    pos = a[m]
    if pos.dtype.kind == "f" and np.isnan(pos).any():
        raise ValueError("maps contain NaN")
    region_w = _region_weights(m) if regions else None
    neg = a[~m]
    n_neg = neg.size
    if normal_pixel_budget is not None and n_neg > normal_pixel_budget:
        neg = _subsample(neg, normal_pixel_budget, seed)
    neg.sort()
    if neg.size and neg.dtype.kind == "f" and np.isnan(neg[-1]):
        raise ValueError("maps contain NaN")
    scale = n_neg / neg.size if neg.size else 1.0
    return _Pixels(pos=pos, neg=neg, neg_scale=scale, region_w=region_w)


# ----------------------------------------------------------------------------------------------
# pixel level: metrics on prepared scores
# ----------------------------------------------------------------------------------------------


def _auroc(px: _Pixels) -> float:
    if px.pos.size == 0 or px.neg.size == 0:
        return NAN
    u, c = px.pos_unique()
    below = np.searchsorted(px.neg, u, side="left")
    ties = np.searchsorted(px.neg, u, side="right") - below
    wins = c.astype(np.float64) @ (below + 0.5 * ties)
    return float(wins / (float(px.pos.size) * float(px.neg.size)))


def _pr_at_positive_scores(px: _Pixels) -> tuple[np.ndarray, np.ndarray]:
    """(TP, FP) at the thresholds = distinct anomalous scores, in decreasing order.

    Precision/recall only need these thresholds: recall changes only there (AP), and for a given TP
    the highest such threshold has the fewest FP (F1-max).
    """
    u, c = px.pos_unique()
    u, c = u[::-1], c[::-1]
    tp = np.cumsum(c).astype(np.float64)
    fp = (px.neg.size - np.searchsorted(px.neg, u, side="left")).astype(np.float64) * px.neg_scale
    return tp, fp


def _ap(px: _Pixels) -> float:
    if px.pos.size == 0:
        return NAN
    tp, fp = _pr_at_positive_scores(px)
    precision = tp / (tp + fp)
    recall = tp / px.pos.size
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def _f1_max(px: _Pixels) -> float:
    if px.pos.size == 0:
        return NAN
    tp, fp = _pr_at_positive_scores(px)
    # F1 = 2PR / (P + R) = 2 TP / (TP + FP + n_pos); TP >= 1 at every threshold here.
    return float(np.max(2.0 * tp / (tp + fp + px.pos.size)))


def _trapezoid_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under (x, y) (x non-decreasing, x[0] = 0) from 0 to ``x_max``.

    When no point lies exactly at ``x_max``, the curve is cut there with a point interpolated
    linearly on the segment that crosses it.
    """
    j = int(np.searchsorted(x, x_max, side="right"))  # x[:j] <= x_max
    xs, ys = x[:j], y[:j]
    if j < x.size and xs[-1] < x_max:
        x0, x1, y0, y1 = x[j - 1], x[j], y[j - 1], y[j]
        xs = np.append(xs, x_max)
        ys = np.append(ys, y0 + (y1 - y0) * (x_max - x0) / (x1 - x0))
    return float(np.sum(np.diff(xs) * (ys[1:] + ys[:-1])) / 2.0)


def _aupro(px: _Pixels, fpr_limit: float) -> float:
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    assert px.region_w is not None
    if px.pos.size == 0 or px.neg.size == 0:
        return NAN
    neg, n_neg = px.neg, px.neg.size
    order = np.argsort(px.pos, kind="stable")
    pos = px.pos[order]
    # suffix[i] = PRO contribution of anomalous pixels pos[i:] (those >= pos[i]); suffix[n_pos] = 0
    suffix = np.append(np.cumsum(px.region_w[order][::-1])[::-1], 0.0)
    suffix /= suffix[0]  # the weights sum to 1; make PRO = 1 exact once every region pixel is in
    del order
    # The exact curve has a point at every distinct score t. Between two consecutive distinct
    # anomalous scores only normal pixels enter, so PRO is constant there and those points are
    # collinear (a horizontal run): the polyline, its area and its value at fpr_limit are fully
    # given by two points per distinct anomalous score u (descending):
    #   (FPR(>u), PRO(>u)) = the last threshold above u, then (FPR(>=u), PRO(>=u)) = threshold u,
    # (a diagonal step when normal pixels tie with u), preceded by (0, 0) and followed by (1, 1),
    # the lowest threshold. This keeps memory O(#anomalous pixels) beyond the sorted normal scores.
    keep = np.empty(pos.size, dtype=bool)
    keep[0] = True
    np.not_equal(pos[1:], pos[:-1], out=keep[1:])
    u = pos[keep][::-1]
    del keep
    fpr = np.empty(2 * u.size + 2)
    pro = np.empty(2 * u.size + 2)
    fpr[0] = pro[0] = 0.0
    fpr[-1] = pro[-1] = 1.0
    fpr[1:-1:2] = (n_neg - np.searchsorted(neg, u, side="right")) / n_neg
    fpr[2:-1:2] = (n_neg - np.searchsorted(neg, u, side="left")) / n_neg
    pro[1:-1:2] = suffix[np.searchsorted(pos, u, side="right")]
    pro[2:-1:2] = suffix[np.searchsorted(pos, u, side="left")]
    value = _trapezoid_to(fpr, pro, fpr_limit) / fpr_limit
    return float(min(max(value, 0.0), 1.0))


# ----------------------------------------------------------------------------------------------
# pixel level: public functions
# ----------------------------------------------------------------------------------------------


def pixel_auroc(masks, maps) -> float:
    """Pixel-level area under the ROC curve over all pixels of all images.

    Equal (to rounding) to ``roc_auc_score(masks.ravel(), maps.ravel())``: the probability that a
    random anomalous pixel scores higher than a random normal pixel, ties counting 1/2, computed by
    binary search of each distinct anomalous score among the sorted normal scores (no argsort).
    Not flipped below 0.5. nan when there is no anomalous or no normal pixel.
    """
    return _auroc(_prepare(masks, maps))


def pixel_ap(masks, maps) -> float:
    """Pixel-level average precision over all pixels of all images.

    Equal (to rounding) to ``average_precision_score(masks.ravel(), maps.ravel())``:
    ``sum_n (R_n - R_{n-1}) * P_n`` over thresholds ``score >= t_n`` at the distinct scores in
    decreasing order (only thresholds at anomalous scores change recall, so only those are
    evaluated). nan when there is no anomalous pixel.
    """
    return _ap(_prepare(masks, maps))


def pixel_f1_max(masks, maps) -> float:
    """Pixel-level maximal F1 over thresholds, over all pixels of all images.

    ``max_t 2 P(t) R(t) / (P(t) + R(t))`` for ``score >= t`` over all distinct scores ``t``; equal to
    the maximum of F1 along ``precision_recall_curve(masks.ravel(), maps.ravel())`` (the maximum is
    always attained at a threshold equal to an anomalous pixel's score, which is where it is
    evaluated). nan when there is no anomalous pixel.
    """
    return _f1_max(_prepare(masks, maps))


def pixel_aupro(masks, maps, fpr_limit: float = 0.3) -> float:
    """Normalised area under the per-region-overlap (PRO) curve up to ``fpr_limit`` (MVTec AD).

    Definition (as the MVTec AD reference evaluation code):

    * Regions: the connected components of each image's ground-truth mask, 8-connectivity
      (``scipy.ndimage.label`` with a 3x3 all-ones structure); regions never span images.
      Let ``R`` be the number of regions over all images.
    * For a threshold ``t`` (a pixel is predicted anomalous when ``map >= t``):
      ``PRO(t) = (1/R) * sum_regions |{p in region : map[p] >= t}| / |region|``, i.e. every region
      pixel weighs ``1 / (R * |region|)``; ``FPR(t)`` = fraction of ground-truth normal pixels
      (mask == 0, over all images) with ``map >= t``.
    * The curve is the point (0, 0) followed by ``(FPR(t), PRO(t))`` for every distinct score ``t`` in
      decreasing order, ending at (1, 1). Ties are a single step: all pixels with equal score enter
      together, so a threshold shared by normal and region pixels gives a diagonal segment.
      Computed exactly with one sort of the normal scores, cumulative sums of the region-pixel
      weights and binary search; runs of thresholds where only normal pixels enter are horizontal
      (PRO constant), so only their end points are materialised (same polyline, same area).
    * AUPRO = (trapezoid area under the curve for FPR in [0, fpr_limit]) / fpr_limit, where the curve
      is cut at ``fpr_limit`` by linear interpolation on the segment crossing it. The result lies in
      [0, 1] (clipped against rounding, so never above 1); a perfect map gives 1.

    nan when the masks contain no anomalous region (or no normal pixel). ``fpr_limit`` must be in
    (0, 1].
    """
    return _aupro(_prepare(masks, maps, regions=True), fpr_limit)


# ----------------------------------------------------------------------------------------------
# registry and per-class evaluation
# ----------------------------------------------------------------------------------------------

METRICS: dict[str, Callable[..., float]] = {
    "image_auroc": image_auroc,
    "image_ap": image_ap,
    "image_f1_max": image_f1_max,
    "pixel_auroc": pixel_auroc,
    "pixel_ap": pixel_ap,
    "pixel_f1_max": pixel_f1_max,
    "pixel_aupro": pixel_aupro,
}
DEFAULT_METRICS: tuple[str, ...] = ("image_auroc", "pixel_auroc")

_PIXEL_IMPL: dict[str, Callable[[_Pixels], float]] = {
    "pixel_auroc": _auroc,
    "pixel_ap": _ap,
    "pixel_f1_max": _f1_max,
    "pixel_aupro": lambda px: _aupro(px, 0.3),
}


def resolve_metrics(names: str | Iterable[str] | None) -> tuple[str, ...]:
    """Validate a metric selection and return it as a tuple of names (order kept, duplicates dropped).

    ``names`` is a list/tuple of names from ``METRICS``, a single name, or ``"all"`` (also inside a
    list, e.g. ``["all"]``) meaning every metric in ``METRICS`` order; None gives ``DEFAULT_METRICS``.
    An unknown name raises ``ValueError`` with a one-line message listing the valid names.
    """
    if names is None:
        return DEFAULT_METRICS
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for name in names:
        if name == "all":
            selected: Iterable[str] = METRICS
        elif isinstance(name, str) and name in METRICS:
            selected = (name,)
        else:
            valid = ", ".join(["all", *METRICS])
            raise ValueError(f"unknown metric {name!r}; valid names: {valid}")
        out.extend(n for n in selected if n not in out)
    return tuple(out)


def image_undefined_reason(labels) -> str:
    """Why the image metrics of a class with these 0/1 ``labels`` are undefined (nan)."""
    y = np.asarray(labels).ravel() != 0
    if y.size == 0:
        return "no test image"
    if y.all():
        return f"all {y.size} test images are anomalous"
    if not y.any():
        return f"all {y.size} test images are normal"
    return "not a number"


def without_pixel_metrics(names: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(image metrics kept, pixel metrics skipped) of ``names``: for a test set without ground-truth
    masks (``data=folder`` without masks), whose pixel metrics must be absent, never computed from
    invented all-normal masks."""
    names = resolve_metrics(names)
    return (tuple(n for n in names if not n.startswith("pixel_")), tuple(n for n in names if n.startswith("pixel_")))


def check_normal_pixel_budget(value) -> int | None:
    """``value`` as an int >= 1 or None (exact); anything else raises ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"normal_pixel_budget must be an int or None, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"normal_pixel_budget must be >= 1, got {value}")
    return int(value)


def class_metrics(names, labels, scores, masks, maps, *, normal_pixel_budget: int | None = None,
                  seed: int = 0) -> dict[str, float]:
    """Compute the metrics ``names`` (anything ``resolve_metrics`` accepts) for ONE class.

    Image metrics use ``labels``/``scores``, pixel metrics ``masks``/``maps`` (either pair may be
    None when no metric of its kind is requested). Returns ``{name: float}`` in the resolved order.

    * If the class has a single image label (all normal or all anomalous), every image metric is nan.
    * If the masks have no anomalous pixel, every pixel metric is nan.
    * Pixel metrics share one extraction and sort of the scores. ``pixel_aupro`` uses
      ``fpr_limit=0.3``.
    * ``normal_pixel_budget`` (int, default None = exact): when the class has more normal pixels
      (mask == 0) than this, the pixel metrics use a random subsample of exactly that many normal
      pixels (uniform without replacement, ``np.random.default_rng(seed)``) plus ALL anomalous
      pixels. The
      subsample replaces the normal pixels in AUROC and in AUPRO's FPR (AUPRO's regions keep all
      their pixels); for AP and F1-max each sampled normal pixel stands for
      ``n_normal / budget`` normal pixels (false positives are scaled back), so precision is not
      biased upwards by the subsampling. With the budget >= the number of normal pixels, the
      results equal the exact ones.
    """
    resolved = resolve_metrics(names)
    normal_pixel_budget = check_normal_pixel_budget(normal_pixel_budget)
    out: dict[str, float] = {}
    image_names = [n for n in resolved if n.startswith("image_")]
    pixel_names = [n for n in resolved if n.startswith("pixel_")]
    if image_names:
        y, s = _image_inputs(labels, scores)
        single = _single_class(y)
        for name in image_names:
            out[name] = NAN if single else METRICS[name](y, s)
    if pixel_names:
        px = _prepare(masks, maps, regions="pixel_aupro" in pixel_names,
                      normal_pixel_budget=normal_pixel_budget, seed=seed)
        for name in pixel_names:
            out[name] = NAN if px.pos.size == 0 else _PIXEL_IMPL[name](px)
    return {name: out[name] for name in resolved}


def mean_metrics(per_class: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Unweighted mean over classes of each metric, ignoring nan (and None / missing entries).

    Metrics appear in order of first appearance; a metric that is nan for every class is nan.
    """
    names: list[str] = []
    for values in per_class.values():
        names.extend(n for n in values if n not in names)
    out: dict[str, float] = {}
    for name in names:
        vals = [float(v[name]) for v in per_class.values() if v.get(name) is not None]
        vals = [v for v in vals if not math.isnan(v)]
        out[name] = sum(vals) / len(vals) if vals else NAN
    return out
