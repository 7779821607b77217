"""The optimizers and LR schedules the trainer configs name: UniAD's single LR step, Dinomaly's warm-up cosine
and StableAdamW."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from tests.conftest import compose_cfg


def _epoch_lrs(cfg, epochs: int) -> list[float]:
    """The LR of every epoch under ``bench.fit``'s per-epoch stepping (no step after epoch 0)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = instantiate(cfg.trainer.optimizer)([param])
    scheduler = instantiate(cfg.trainer.scheduler)(optimizer)
    lrs = []
    for epoch in range(epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        if epoch > 0:
            scheduler.step()
    return lrs


def test_the_lr_steps_once_at_lr_step_and_never_again():
    cfg = compose_cfg(["profile=smoke", "trainer.lr_step=2"])
    lr, gamma = cfg.trainer.lr, cfg.trainer.lr_gamma
    lrs = _epoch_lrs(cfg, 12)
    # epochs 0..lr_step at the base LR (the official step(epoch) convention), then x gamma for good
    assert lrs[:3] == [lr] * 3
    assert lrs[3:] == pytest.approx([lr * gamma] * 9, rel=1e-12)


def test_the_paper_schedule_is_801_epochs_at_lr_then_a_tenth():
    cfg = compose_cfg(["profile=paper"])
    lrs = _epoch_lrs(cfg, int(cfg.trainer.epochs))
    assert lrs[:801] == [1e-4] * 801
    assert lrs[801:] == pytest.approx([1e-5] * 199, rel=1e-12)


def _published_warm_cosine(base, final, total, warmup, start=0.0) -> np.ndarray:
    """Dinomaly ``utils.py`` ``WarmCosineScheduler``'s table, written from its definition."""
    warm = np.linspace(start, base, warmup)
    iters = np.arange(total - warmup)
    return np.concatenate((warm, final + 0.5 * (base - final) * (1 + np.cos(np.pi * iters / len(iters)))))


def test_warmup_cosine_follows_the_published_table_per_iteration():
    cfg = compose_cfg(["profile=dinomaly"])
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = instantiate(cfg.trainer.optimizer)([param])
    scheduler = instantiate(cfg.trainer.scheduler)(optimizer)
    table = _published_warm_cosine(2e-3, 2e-4, 10_000, 100)
    lrs = []
    for _ in range(10_050):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(lrs[:10_000], table, rtol=1e-12, atol=0)
    assert lrs[0] == 0.0 and lrs[99] == 2e-3 and lrs[100] == 2e-3
    assert lrs[10_000:] == [2e-4] * 50  # past the end: the final LR
    # a resumed scheduler continues on the same curve
    state = scheduler.state_dict()
    again = instantiate(cfg.trainer.scheduler)(instantiate(cfg.trainer.optimizer)([param]))
    again.load_state_dict(state)
    assert again.lr_at(again.last_epoch) == scheduler.lr_at(scheduler.last_epoch)


def _published_stable_adamw(params, grads_per_step, lr, betas, eps, wd):
    """Dinomaly's ``optimizers/StableAdamW.py`` as written out from its definition (Wortsman et al. 2023,
    Alg. 2, with AMSGrad's running maximum of v): decoupled decay at the unclipped LR, then the Adam step
    divided by max(1, RMS(g / (sqrt(v_max / bc2) + eps)))."""
    b1, b2 = betas
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    vmax = [torch.zeros_like(p) for p in params]
    clipped = 0
    for t, grads in enumerate(grads_per_step, start=1):
        for i, (p, g) in enumerate(zip(params, grads, strict=True)):
            p.mul_(1 - lr * wd)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            vmax[i] = torch.maximum(vmax[i], v[i])
            denom = vmax[i].sqrt() / math.sqrt(1 - b2**t) + eps
            rms = float((g / denom).pow(2).mean().sqrt())
            clipped += rms > 1
            p.sub_(lr / (1 - b1**t) / max(1.0, rms) * m[i] / denom)
    return clipped


def test_stable_adamw_is_the_published_update():
    cfg = compose_cfg(["profile=dinomaly"])
    gen = torch.Generator().manual_seed(0)
    shapes = [(7, 5), (5,)]
    init = [torch.randn(s, generator=gen) for s in shapes]
    # gradients of growing size: the second moment lags, so the update clipping engages
    grads = [[torch.randn(s, generator=gen) * (1 + 10 * (t == 6)) for s in shapes] for t in range(12)]
    ours = [torch.nn.Parameter(x.clone()) for x in init]
    optimizer = instantiate(cfg.trainer.optimizer)(ours)
    for step in grads:
        for p, g in zip(ours, step, strict=True):
            p.grad = g.clone()
        optimizer.step()
    reference = [x.clone() for x in init]
    clipped = _published_stable_adamw(reference, grads, 2e-3, (0.9, 0.999), 1e-10, 1e-4)
    assert clipped > 0
    for p, r in zip(ours, reference, strict=True):
        torch.testing.assert_close(p.detach(), r, rtol=1e-6, atol=1e-7)
    # and it is not plain AdamW with AMSGrad: the clipping changed the result
    plain = [torch.nn.Parameter(x.clone()) for x in init]
    adamw = torch.optim.AdamW(plain, lr=2e-3, betas=(0.9, 0.999), eps=1e-10, weight_decay=1e-4, amsgrad=True)
    for step in grads:
        for p, g in zip(plain, step, strict=True):
            p.grad = g.clone()
        adamw.step()
    assert not torch.allclose(plain[0].detach(), ours[0].detach(), rtol=0, atol=1e-6)
