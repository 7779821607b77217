"""The conventions of ``eval.conventions`` collected class by class during evaluation (``bench.evaluate``).

The suite's own metrics (``metrics``) are exact: every distinct score a threshold, AUROC never flipped,
AUPRO integrated to FPR 0.3 and divided by 0.3, the image score the max of the 16x16 average-pooled map,
the mean over classes. Published UniAD figures come from code that differs in each of these; each
registered convention (``metrics.conventions.registry``) follows one repository, and ``Conventions``
runs the requested ones, each through its own row: an unknown name raises, it is never computed as
another convention.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from metrics.conventions.registry import convention, convention_names


class Conventions:
    """Collects each requested convention class by class; ``result()`` gives, per convention, the
    per-class values and their mean (``pooled``: the pooled values only). ``pooled`` keeps every
    class's pixel scores until the end (4 bytes a pixel); the others keep nothing between classes."""

    def __init__(self, names: Iterable[str], *, pool_size: int = 16):
        names = [names] if isinstance(names, str) else list(names)
        known = convention_names()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise ValueError(f"eval.conventions: unknown {', '.join(map(repr, unknown))}; choose among "
                             f"{', '.join(known)}")
        self.names = list(dict.fromkeys(names))
        self.pool_size = int(pool_size)
        self.collectors = {n: convention(n).collector(pool_size=self.pool_size) for n in self.names}

    def add(self, category: str, labels, scores, masks, maps) -> None:
        labels = np.asarray(labels).astype(bool)
        masks = np.asarray(masks).astype(bool)
        maps = np.asarray(maps, dtype=np.float32)
        scores = np.asarray(scores)
        for collector in self.collectors.values():
            collector.add(category, labels, scores, masks, maps)

    def result(self) -> dict[str, dict]:
        return {name: collector.result() for name, collector in self.collectors.items()}


def conventions_from_config(eval_cfg: Mapping) -> Conventions | None:
    """The collector for ``eval.conventions`` (None when it is empty or absent)."""
    names = eval_cfg.get("conventions")
    if not names:
        return None
    return Conventions(list(names) if not isinstance(names, str) else [names],
                       pool_size=int(eval_cfg.get("pool_size") or 16))
