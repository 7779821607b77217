"""One class's metrics from its arrays, and the mean over classes.

Image metrics take ``labels`` (0/1 per image, 1 = anomalous) and ``scores``; pixel metrics take
``masks`` (N x H x W, bool or 0/1; H x W and N x 1 x H x W too) and ``maps`` (same shape, higher = more
anomalous) and are computed over all pixels of all images at once (never averaged per image) by the
engine of ``metrics.class_maps``. Every metric is a threshold sweep over *all distinct scores*; scores
are compared in the precision they are given in (float32 maps are never up-cast, so ties are exactly
those of the input), and a threshold ``t`` classifies a pixel/image as anomalous when ``score >= t``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from metrics.inputs import check_normal_pixel_budget, image_inputs, single_class
from metrics.pixel import pixel_values
from metrics.registry import metric, resolve_metrics

NAN = float("nan")


def class_metrics(names, labels, scores, masks, maps, *, normal_pixel_budget: int | None = None,
                  seed: int = 0) -> dict[str, float]:
    """Compute the metrics ``names`` (anything ``resolve_metrics`` accepts) for ONE class.

    Image metrics use ``labels``/``scores``, pixel metrics ``masks``/``maps`` (either pair may be
    None when no metric of its kind is requested). Returns ``{name: float}`` in the resolved order.

    * If the class has a single image label (all normal or all anomalous), every image metric is nan.
    * If the masks have no anomalous pixel, every pixel metric is nan.
    * Pixel metrics share one extraction and sort of the scores. ``pixel_aupro`` uses
      ``fpr_limit=0.3``.
    * ``normal_pixel_budget`` (int, default None = exact): the pixel metrics use a seeded subsample of
      that many normal pixels (``metrics.class_maps.ClassMaps.pixel_metrics``); with the budget >= the
      number of normal pixels, the results equal the exact ones.
    """
    resolved = resolve_metrics(names)
    normal_pixel_budget = check_normal_pixel_budget(normal_pixel_budget)
    out: dict[str, float] = {}
    image_names = [n for n in resolved if metric(n).level == "image"]
    pixel_names = [n for n in resolved if metric(n).level == "pixel"]
    if image_names:
        y, s = image_inputs(labels, scores)
        single = single_class(y)
        for name in image_names:
            out[name] = NAN if single else metric(name).fn(y, s)
    if pixel_names:
        out.update(pixel_values(pixel_names, masks, maps, normal_pixel_budget=normal_pixel_budget, seed=seed))
    return {name: out[name] for name in resolved}


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
    return (tuple(n for n in names if metric(n).level == "image"),
            tuple(n for n in names if metric(n).level == "pixel"))


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
