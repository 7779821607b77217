"""Learning-rate schedules stepped once per training iteration (``trainer.lr_interval=iteration``)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class WarmupCosine(LRScheduler):
    """Linear warm-up then cosine decay, by iteration (Dinomaly's ``utils.py`` ``WarmCosineScheduler``).

    At iteration ``t`` (0-based; the LR the ``t``-th optimiser step uses): the ``warmup`` points of
    ``linspace(warmup_lr, base_lr, warmup)`` for ``t < warmup`` (so the first step runs at ``warmup_lr`` and
    step ``warmup - 1`` at ``base_lr``), then ``final_lr + (base_lr - final_lr) (1 + cos(pi i / n)) / 2``
    with ``i = t - warmup`` and ``n = total - warmup``, and ``final_lr`` from ``total`` on. Closed form, so
    a resumed run (``last_epoch`` in the checkpoint) continues on the same curve.
    """


    def __init__(self, optimizer: Optimizer, base_lr: float, final_lr: float, total: int, warmup: int = 0,
                 warmup_lr: float = 0.0, last_epoch: int = -1):
        if not 0 <= int(warmup) < int(total):
            raise ValueError(f"trainer.scheduler.warmup={warmup} must lie in [0, total={total})")
        self.base_lr, self.final_lr = float(base_lr), float(final_lr)
        self.total, self.warmup, self.warmup_lr = int(total), int(warmup), float(warmup_lr)
        super().__init__(optimizer, last_epoch)

    def lr_at(self, t: int) -> float:
        if t >= self.total:
            return self.final_lr
        if t < self.warmup:
            if t == self.warmup - 1 and t > 0:  # linspace's endpoint is exact
                return self.base_lr
            return self.warmup_lr + t * ((self.base_lr - self.warmup_lr) / max(self.warmup - 1, 1))
        i, n = t - self.warmup, self.total - self.warmup
        return self.final_lr + 0.5 * (self.base_lr - self.final_lr) * (1 + math.cos(math.pi * i / n))

    def get_lr(self) -> list[float]:
        return [self.lr_at(self.last_epoch) for _ in self.optimizer.param_groups]
