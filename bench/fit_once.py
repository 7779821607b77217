"""The one-pass "training" of PaDiM and PatchCore: statistics of the training features.

No optimiser, no epochs, no loss: the detector's ``fit_batches`` reads every training feature map
once (the frozen-feature cache when there is one, else the backbone on the images) and keeps its
statistics. The result is saved as ``last.ckpt`` like a trained model, so ``task=eval ckpt=...`` works.
"""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path

import torch

from bench import checkpoint
from bench.fit import _batches


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (``getrusage`` maxrss: KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(rss / (2**20 if sys.platform == "darwin" else 2**10), 1)


def fit_statistics(detector, train_set, trainer_cfg, *, run_dir: Path, device: torch.device, seed: int,
                   features: torch.Tensor | None = None, logger=None, config: dict | None = None,
                   choices: dict | None = None) -> dict:
    """One pass over the training features; return timing figures (the record's ``timing``).

    ``config`` and ``choices``: the job's resolved config and config-group choices, stored in the checkpoint
    (``task=eval`` rebuilds the model from them).
    """
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    detector.eval()
    generator = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    batches = _batches(features, train_set, int(trainer_cfg.batch_size), generator, device,
                       int(trainer_cfg.num_workers))
    with torch.no_grad():
        stats = detector.fit_batches(x if kind == "features" else detector.target(x) for kind, x in batches)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - t0
    n_images = features.shape[0] if features is not None else len(train_set)
    checkpoint.save(Path(run_dir) / checkpoint.CKPT, model=checkpoint.learnable_state(detector), epoch=0,
                    rng=checkpoint.rng_state(), config=config, choices=choices,
                    device=device.type)
    if logger is not None:
        logger.log_scalars({f"fit/{k}": v for k, v in stats.items()}, step=0)
    out = {"fit": "one pass, no optimiser", "fit_s": round(elapsed, 3), "epochs_run": 0,
           "train_images_per_s": round(n_images / elapsed, 2) if elapsed > 0 else None,
           "fit_stats": stats, "fit_peak_rss_mb": peak_rss_mb()}
    if device.type == "cuda":
        out["fit_peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return out
