"""Training loop: the configured optimizer and LR schedule, gradient clipping, checkpoints every
``trainer.ckpt_every`` epochs.

The schedule steps once per epoch (``trainer.lr_interval=epoch``, UniAD's StepLR) or once per training
iteration (``iteration``, Dinomaly's warm-up cosine); ``trainer.iterations`` stops training after that many
iterations (the last epoch cut short) instead of after ``trainer.epochs``. A detector with a
``set_iteration(i)`` method is told the iteration before each step (Dinomaly's hard-mining ramp).

A job restarted in the same run dir continues from ``last.ckpt`` (model, optimizer, scheduler,
epoch and RNG state), so it ends with the record an uninterrupted run gives (on CPU).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader
from tqdm import tqdm

from bench import checkpoint, interrupt, precision
from bench.build import learnable_parameters

log = logging.getLogger(__name__)


def make_train_step(detector, optimizer, params, trainer_cfg, device: torch.device):
    """The training step that ``fit`` runs (and ``bench.tools.perf`` times): ``step(kind, x) -> loss``.

    ``kind`` is "features" (cached targets) or "images"; the returned loss is detached and stays on the
    device (no host-device sync). The forward runs under ``trainer.precision``'s autocast; the loss is
    computed in fp32 outside it, so parameters, gradients, optimizer state and loss are fp32.
    ``trainer.compile=true`` compiles the reconstruction model (inductor, CPU and CUDA).
    """
    mode = precision.check(str(trainer_cfg.precision))
    reconstruct = detector.reconstruct
    if trainer_cfg.compile:
        reconstruct = torch.compile(detector.reconstruction)
    clip = float(trainer_cfg.clip_grad or 0)

    def step(kind: str, x: torch.Tensor) -> torch.Tensor:
        precision.configure(mode, device)  # process-wide flags: set per step, another step may differ
        with precision.autocast(mode, device):
            # a trainable backbone (S5) gets gradients through its own target as well
            target = x if kind == "features" else detector.target(x)
            rec = reconstruct(target)
        loss = detector.loss(target.float(), rec.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        return loss.detach()

    return step


def _batches(features, dataset, batch_size: int, generator: torch.Generator, device, num_workers: int):
    """Yield ("features", cached targets) or ("images", images) batches in a seeded random order.

    ``features`` already live on ``device`` (moved once per fit); the epoch's order is drawn on the CPU
    with the seeded generator (the same order on every device) and moved once, so the gathers run on
    the device without a host-device sync.
    """
    if features is not None:
        order = torch.randperm(features.shape[0], generator=generator).to(features.device, non_blocking=True)
        for begin in range(0, features.shape[0], batch_size):
            yield "features", features[order[begin : begin + batch_size]].float()
        return
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, generator=generator, num_workers=num_workers)
    for batch in loader:
        yield "images", batch["image"].to(device, non_blocking=True)


def fit(detector, train_set, trainer_cfg, *, run_dir: Path, device: torch.device, seed: int,
        features: torch.Tensor | None = None, logger=None, config: dict | None = None,
        on_epoch: Callable[[int, torch.nn.Module], None] | None = None, choices: dict | None = None) -> dict:
    """Train ``detector`` in place; return timing figures. ``features``: cached targets (or None).

    ``config`` and ``choices`` (the job's resolved config and its config-group choices) are stored in every
    checkpoint with the device type: a resume under a config that differs in a key that changes results
    is refused (``checkpoint.check_resume``), and ``task=eval`` rebuilds the model from them
    (``checkpoint.model_config``).
    ``on_epoch(epochs_done, detector)``: called after every epoch, before its checkpoint (the test
    curve of ``eval.every``, ``bench.curve``); its time is not counted in ``fit_s``.
    """
    params = learnable_parameters(detector)
    optimizer = instantiate(trainer_cfg.optimizer)(params)
    scheduler = instantiate(trainer_cfg.scheduler)(optimizer)
    n_images = features.shape[0] if features is not None else len(train_set)
    batch_size = int(trainer_cfg.batch_size)
    steps_per_epoch = math.ceil(n_images / batch_size)
    iterations = int(trainer_cfg.iterations) if trainer_cfg.iterations is not None else None
    epochs = math.ceil(iterations / steps_per_epoch) if iterations is not None else int(trainer_cfg.epochs)
    per_iteration = str(trainer_cfg.lr_interval) == "iteration"
    set_iteration = getattr(detector, "set_iteration", None)
    ckpt_path = Path(run_dir) / checkpoint.CKPT
    start = 0
    if ckpt_path.is_file():
        state = checkpoint.load(ckpt_path)
        checkpoint.check_resume(state, config, ckpt_path, device.type)
        checkpoint.load_detector_state(detector, state["model"], ckpt_path)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        checkpoint.set_rng_state(state["rng"])
        start = int(state["epoch"]) + 1
        log.info(f"resuming from {ckpt_path} at epoch {start}/{epochs}")

    interrupt.begin(ckpt_path, epochs, start - 1 if start else None)  # Ctrl-C saves the last finished epoch
    train_step = make_train_step(detector, optimizer, params, trainer_cfg, device)
    if features is not None:
        features = features.to(device)  # once for the whole fit (cache dtype: ~0.4 GB for MVTec in fp16)
    iteration = start * steps_per_epoch
    seen, t0 = 0, time.perf_counter()
    bar = tqdm(range(start, epochs), desc="fit", initial=start, total=epochs, dynamic_ncols=True)
    for epoch in bar:
        detector.train()
        generator = torch.Generator().manual_seed(seed * 100003 + epoch)
        total = torch.zeros((), device=device)
        steps = 0
        batches = _batches(features, train_set, batch_size, generator, device, int(trainer_cfg.num_workers))
        for kind, x in batches:
            if iterations is not None and iteration >= iterations:
                break
            if set_iteration is not None:
                set_iteration(iteration)
            total += train_step(kind, x)
            steps += 1
            iteration += 1
            seen += x.shape[0]
            if per_iteration:
                scheduler.step()
        mean_loss = float(total) / max(steps, 1)  # one host-device sync per epoch
        if not math.isfinite(mean_loss):
            raise FloatingPointError(
                f"training loss became {mean_loss} in epoch {epoch}: lower trainer.lr or check the data"
            )
        # The official code calls step(epoch) after each epoch, so epochs 0..lr_step run at the base
        # LR (lr_step + 1 epochs); skipping the step after epoch 0 gives the same schedule.
        if not per_iteration and epoch > 0:
            scheduler.step()
        lr = optimizer.param_groups[0]["lr"]
        bar.set_postfix(loss=f"{mean_loss:.4g}", lr=f"{lr:.2g}")
        if logger is not None:
            logger.log_scalars({"train/loss": mean_loss, "train/lr": lr, "epoch": epoch}, step=epoch)
        if on_epoch is not None:
            t_cb = time.perf_counter()
            on_epoch(epoch + 1, detector)
            t0 += time.perf_counter() - t_cb  # the training figures leave the evaluations out
        last = epoch == epochs - 1

        def state(epoch: int = epoch) -> dict:  # what last.ckpt holds (kept for Ctrl-C too: bench.interrupt)
            return dict(model=checkpoint.learnable_state(detector), optimizer=optimizer.state_dict(),
                        scheduler=scheduler.state_dict(), epoch=epoch, rng=checkpoint.rng_state(),
                        config=config, choices=choices, device=device.type)

        saved = bool(last or (trainer_cfg.ckpt_every and (epoch + 1) % int(trainer_cfg.ckpt_every) == 0))
        if saved:
            checkpoint.assert_finite(detector, epoch)  # a diverged model is never saved (nor resumed)
            checkpoint.save(ckpt_path, **state())
        interrupt.epoch_done(epoch, saved, state)
    bar.close()
    interrupt.end()
    elapsed = time.perf_counter() - t0
    return {"fit_s": round(elapsed, 3), "epochs_run": epochs - start,
            "train_images_per_s": round(seen / elapsed, 2) if elapsed > 0 and seen else None}
