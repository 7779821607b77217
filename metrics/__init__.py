"""The metrics of UniAD Bench: one registry row per metric, one exact streamed engine, the conventions.

* ``metrics.registry``: the table of metrics (name, level, label, column order, mAD member,
  definition), filled by ``@register_metric`` beside each metric's code: ``metrics.image`` (image AUROC,
  AP, F1-max), ``metrics.ranked`` (pixel AUROC, AP, F1-max) and ``metrics.aupro`` (pixel AUPRO).
* ``metrics.class_maps``: the engine every pixel metric runs in (one class's maps, bounded memory).
* ``metrics.compute``: one class's metrics from its arrays, and the mean over classes.
* ``metrics.subset_metrics``: a class's metrics over its samples (Real-IAD) and subsets (MVTec LOCO).
* ``metrics.conventions``: the metrics as published evaluation code computes them (``eval.conventions``).

Importing this package registers the built-in metrics; it imports neither torch nor scikit-learn
(those load when a value is computed), so the reports read the registry cheaply.
"""

from __future__ import annotations

from metrics.aupro import pixel_aupro
from metrics.compute import class_metrics, image_undefined_reason, mean_metrics, without_pixel_metrics
from metrics.image import image_ap, image_auroc, image_f1_max
from metrics.inputs import binary_masks, check_normal_pixel_budget
from metrics.ranked import pixel_ap, pixel_auroc, pixel_f1_max
from metrics.registry import (
    DEFAULT_METRICS,
    METRICS,
    column_order,
    is_metric,
    label,
    mad_members,
    metric,
    metric_names,
    register_metric,
    resolve_metrics,
    unregister_metric,
)

__all__ = [
    "DEFAULT_METRICS",
    "METRICS",
    "binary_masks",
    "check_normal_pixel_budget",
    "class_metrics",
    "column_order",
    "image_ap",
    "image_auroc",
    "image_f1_max",
    "image_undefined_reason",
    "is_metric",
    "label",
    "mad_members",
    "mean_metrics",
    "metric",
    "metric_names",
    "pixel_ap",
    "pixel_aupro",
    "pixel_auroc",
    "pixel_f1_max",
    "register_metric",
    "resolve_metrics",
    "unregister_metric",
    "without_pixel_metrics",
]
