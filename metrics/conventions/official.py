"""The official UniAD evaluation: zhiyuanyou/UniAD ``utils/eval_helper.py`` (``EvalImageMax``,
``EvalPerPixelAUC``, ``performances``)."""

from __future__ import annotations

import math

import numpy as np

from metrics.compute import class_metrics
from metrics.conventions.common import NAN, PerClass, auroc, flipped, pooled_max_scores
from metrics.conventions.registry import register_convention


def official(labels, masks, maps, *, pool_size: int = 16) -> dict[str, float]:
    """zhiyuanyou/UniAD ``utils/eval_helper.py``: ``EvalImageMax`` (image label = the mask has an anomalous
    pixel, score = max of the ``avgpool_size`` 16x16 pooled map) and ``EvalPerPixelAUC``, both through
    ``metrics.roc_curve`` + ``metrics.auc`` (exact) and flipped below 0.5. It reports AUROC only."""
    masks = np.asarray(masks).astype(bool)
    y = masks.reshape(len(masks), -1).any(axis=1)
    image = auroc(y, pooled_max_scores(maps, pool_size))
    pixel = class_metrics(["pixel_auroc"], None, None, masks, maps)["pixel_auroc"]  # = roc_curve + auc
    return {"image_auroc": flipped(image) if math.isfinite(image) else NAN,
            "pixel_auroc": flipped(pixel) if math.isfinite(pixel) else NAN}


@register_convention("official", order=0,
                     legend="UniAD utils/eval_helper.py, AUROC flipped below 0.5, image label from the mask")
class Official(PerClass):
    def values(self, labels, scores, masks, maps) -> dict[str, float]:
        return official(labels, masks, maps, pool_size=self.pool_size)
