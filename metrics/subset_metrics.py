"""Metrics of a class beyond its per-image ones, for datasets that annotate their images (docs/datasets.md).

* ``groups`` (a sample id per image, Real-IAD): a sample is anomalous if any of its images is and scores
  as its highest image; the image metrics over samples are reported as ``sample_<metric>``.
* ``subsets`` (the subsets each image belongs to, MVTec LOCO): every metric over the images of subset
  ``t`` is reported as ``<t>_<metric>`` (``logical_image_auroc``, ``structural_pixel_auroc``, ...).

Pure functions of one class's arrays; evaluation calls ``subset_metrics`` once per class.
"""

from __future__ import annotations

import numpy as np

from metrics.compute import class_metrics
from metrics.registry import metric


def sample_level(groups: list[str], labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(label, score) per sample: the max over its images, samples in order of first appearance."""
    order = list(dict.fromkeys(groups))
    index = {g: i for i, g in enumerate(order)}
    ids = np.fromiter((index[g] for g in groups), dtype=np.int64, count=len(groups))
    sample_labels = np.zeros(len(order), dtype=int)
    sample_scores = np.full(len(order), -np.inf)
    np.maximum.at(sample_labels, ids, np.asarray(labels, dtype=int))
    np.maximum.at(sample_scores, ids, np.asarray(scores, dtype=np.float64))
    return sample_labels, sample_scores


def subset_metrics(dataset, idx: list[int], names, labels: np.ndarray, scores: np.ndarray, masks, maps, *,
                   normal_pixel_budget=None) -> dict[str, float]:
    """Extra metrics of the class made of the items ``idx`` of ``dataset`` (empty without annotations)."""
    out: dict[str, float] = {}
    groups = getattr(dataset, "groups", None)
    image_names = [n for n in names if metric(n).level == "image"]
    if groups is not None and image_names:
        y, s = sample_level([groups[i] for i in idx], labels, scores)
        out.update({f"sample_{k}": v for k, v in class_metrics(image_names, y, s, None, None).items()})
    subsets = getattr(dataset, "subsets", None)
    if subsets is not None:
        tags = sorted({t for i in idx for t in subsets[i]})
        for tag in tags:
            keep = np.array([tag in subsets[i] for i in idx])
            pixel = any(metric(n).level == "pixel" for n in names)
            values = class_metrics(names, labels[keep], scores[keep], masks[keep] if pixel else None,
                                   maps[keep] if pixel else None, normal_pixel_budget=normal_pixel_budget, seed=0)
            out.update({f"{tag}_{k}": v for k, v in values.items()})
    return out
