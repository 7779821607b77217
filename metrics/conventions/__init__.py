"""The metrics as each published convention defines them, from the same maps (``eval.conventions``).

One module per convention, each registering its collector with ``@register_convention``
(``metrics.conventions.registry``):

* ``official``: zhiyuanyou/UniAD ``utils/eval_helper.py``.
* ``ader``: zhangzjn/ADer ``util/metric.py`` with ADEval's binned pixel metrics.
* ``dinomaly``: guojiajeremy/Dinomaly ``utils.py``.
* ``anomalib``: open-edge-platform/anomalib >= 2.3 ``src/anomalib/metrics/``.
* ``pooled``: one AUROC over the images and the pixels of all classes together.

``CONVENTIONS`` is the registered names, by their order.
"""

from __future__ import annotations

from metrics.conventions.ader import _adeval_package, ader, ader_pixel_f1_max, adeval_backend, adeval_pixel_metrics
from metrics.conventions.anomalib import anomalib
from metrics.conventions.collect import Conventions, conventions_from_config
from metrics.conventions.common import ALL, PerClass, flipped, pooled_max_scores, top_ratio_scores
from metrics.conventions.dinomaly import dinomaly, dinomaly_aupro
from metrics.conventions.official import official
from metrics.conventions.pooled import pooled_auroc
from metrics.conventions.registry import (
    OURS_LEGEND,
    convention,
    convention_names,
    legend,
    register_convention,
    unregister_convention,
)

__all__ = [
    "ALL",
    "OURS_LEGEND",
    "Conventions",
    "PerClass",
    "_adeval_package",
    "ader",
    "ader_pixel_f1_max",
    "adeval_backend",
    "adeval_pixel_metrics",
    "anomalib",
    "convention",
    "convention_names",
    "conventions_from_config",
    "dinomaly",
    "dinomaly_aupro",
    "flipped",
    "legend",
    "official",
    "pooled_auroc",
    "pooled_max_scores",
    "register_convention",
    "top_ratio_scores",
    "unregister_convention",
]


def __getattr__(name: str):
    if name == "CONVENTIONS":  # a live view: conventions registered later are in it
        return convention_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
