"""Pixel AUPRO (MVTec AD): the reducer of the engine's region pass (``metrics.class_maps``).

The trapezoid area under the PRO curve is linear in the region pixels' indicator curves, so it is a
sum over anomalous pixels. Pixel p of region r weighs ``1 / (R |r|)``; its curve is 0 until FPR reaches
``a`` = FPR(score > s_p), rises linearly to 1 at ``b`` = FPR(score >= s_p) (normal pixels tied with it
enter with it: the diagonal step) and stays 1. Its area up to the limit L is 0 (L <= a),
``(b - a) / 2 + L - b`` (L >= b), or ``(L - a)^2 / (2 (b - a))``. The pass gives, per chunk of images,
each anomalous pixel's region (8-connected, labelled image by image) and the normal pixels above /
at or above its score.
"""

from __future__ import annotations

from metrics.pixel import pixel_value
from metrics.registry import register_metric

NAN = float("nan")


def area_to_limit(gt, ge, limit: float):
    """Area (in normal pixels) under one region pixel's PRO indicator curve from FPR 0 to ``limit``.

    ``gt`` / ``ge`` (float64 tensors): normal pixels scoring above / at or above the pixel; its curve
    rises from 0 at ``gt`` to 1 at ``ge`` (one diagonal step when they differ).
    """
    full = (ge - gt) / 2.0 + (limit - ge)
    cut = (limit - gt).clamp(min=0.0) ** 2 / (2.0 * (ge - gt).clamp(min=1.0))
    return full.where(limit >= ge, cut.where(limit > gt, 0.0))


class AUPRO:
    """Sum over regions of their pixels' mean area, divided by ``R * n_normal * fpr_limit``."""

    def __init__(self, counts):
        if not 0.0 < counts.fpr_limit <= 1.0:
            raise ValueError(f"fpr_limit must be in (0, 1], got {counts.fpr_limit}")
        self.counts, self.total, self.n_regions = counts, 0.0, 0

    def update(self, chunk) -> None:
        area = area_to_limit(chunk.above, chunk.at_or_above, self.counts.fpr_limit * self.counts.n_neg)
        sums = chunk.region.bincount(weights=area, minlength=chunk.n_regions)
        sizes = chunk.region.bincount(minlength=chunk.n_regions)
        self.total = self.total + (sums / sizes).sum()
        self.n_regions += chunk.n_regions

    def result(self) -> float:
        n_neg, fpr_limit = self.counts.n_neg, self.counts.fpr_limit
        if n_neg == 0:
            return NAN
        value = float(self.total) / (self.n_regions * n_neg * fpr_limit)
        return min(max(value, 0.0), 1.0)


@register_metric("pixel_aupro", level="pixel", label="pixel AUPRO", order=6, mad=True,
                 definition="pixel-level area under the per-region-overlap curve to FPR 0.3, divided by 0.3",
                 reducer=AUPRO, needs="regions")
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
    * AUPRO = (trapezoid area under the curve for FPR in [0, fpr_limit]) / fpr_limit, where the curve
      is cut at ``fpr_limit`` by linear interpolation on the segment crossing it. The result lies in
      [0, 1] (clipped against rounding, so never above 1); a perfect map gives 1.

    nan when the masks contain no anomalous region (or no normal pixel). ``fpr_limit`` must be in
    (0, 1].
    """
    return pixel_value("pixel_aupro", masks, maps, fpr_limit=fpr_limit)
