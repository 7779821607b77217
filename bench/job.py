"""One job: build → fit → evaluate → write the run record (DESIGN.md section 4).

``run(cfg, run_dir)`` is importable (tests call it directly); ``bench/__main__.py`` only wraps it.
A job whose run dir already holds a completed record is skipped; a failed job still writes its
record, with ``status: failed`` and a one-line ``error``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from bench import checkpoint
from bench.build import build_datasets, build_detector
from bench.complexity import complexity
from bench.evaluate import evaluate
from bench.feature_cache import cached_features
from bench.fit import fit
from bench.fit_once import fit_statistics
from bench.loggers import make_logger
from bench.record import RECORD, environment, read_record, write_json_atomic

TASKS = ("fit", "eval", "complexity", "train_vis_decoder", "vis_recon")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def one_line(exc: BaseException) -> str:
    """``Type: first line`` of the root cause (Hydra wraps constructor errors in InstantiationException)."""
    while exc.__cause__ is not None and type(exc).__name__ == "InstantiationException":
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def row_name(overrides: list[str]) -> str:
    """The table row of a job: its overrides without the seed and the experiment."""
    keep = [o for o in overrides if o.split("=")[0].lstrip("+") not in ("seed", "experiment")]
    return ",".join(keep)


def _features(detector, dataset, cfg, split: str, device):
    """Cached frozen features of ``dataset``, or None when the features can change (S5, images)."""
    if not (cfg.cache.features and detector.frozen_target):
        return None, None
    data = OmegaConf.to_container(cfg.data, resolve=True)
    parts = {
        "data": data["name"], "root": str(Path(str(data["root"])).expanduser()),
        **{k: data.get(k) for k in ("generator", "categories", "normal_classes")},
        "backbone": cfg.backbone.timm_name, "weights": str(cfg.backbone.weights),
        "outlayers": list(cfg.backbone.outlayers), "image_size": int(cfg.data.image_size),
        "feature_stride": int(cfg.backbone.get("feature_stride", 16)),
    }
    root = cfg.paths.cache_root if cfg.cache.get("disk", True) else None
    feats, hit = cached_features(detector, dataset, split=split, key_parts=parts, cache_root=root,
                                 dtype=cfg.cache.get("dtype", "float16"), batch_size=int(cfg.eval.batch_size),
                                 device=device, num_workers=int(cfg.trainer.num_workers))
    return feats, hit


def _fit_and_evaluate(cfg: DictConfig, run_dir: Path, device, record: dict, logger) -> None:
    train_set, test_set = build_datasets(cfg)  # validates the data before any training
    record["data"] = {"train_images": len(train_set), "test_images": len(test_set),
                      "categories": list(getattr(test_set, "categories", []))}
    detector = build_detector(cfg).to(device)
    record["complexity"] = complexity(detector, int(cfg.data.image_size))
    timing = record.setdefault("timing", {})
    if cfg.task == "eval":
        if not cfg.ckpt:
            raise ValueError("task=eval needs ckpt=PATH (a last.ckpt written by a fit job)")
        state = checkpoint.load(Path(cfg.ckpt))
        checkpoint.load_detector_state(detector, state["model"], cfg.ckpt)
    else:
        t0 = time.perf_counter()
        train_feats, hit = _features(detector, train_set, cfg, "train", device)
        timing["features_s"] = round(time.perf_counter() - t0, 3)
        record["cache"] = {"used": train_feats is not None, "hit": hit}
        fit_fn = fit_statistics if getattr(detector, "fits_by_statistics", False) else fit  # PaDiM, PatchCore
        timing.update(fit_fn(detector, train_set, cfg.trainer, run_dir=run_dir, device=device, seed=int(cfg.seed),
                             features=train_feats, logger=logger))
    if getattr(detector, "fits_by_statistics", False):  # what it stores is known once fitted
        record["complexity"] = complexity(detector, int(cfg.data.image_size))
    test_feats, _ = _features(detector, test_set, cfg, "test", device)
    record["metrics"], eval_timing = evaluate(detector, test_set, cfg.eval, device=device, features=test_feats,
                                              run_dir=run_dir, logger=logger)
    timing.update(eval_timing)


def run(cfg: DictConfig, run_dir: str | Path, overrides: list[str] | None = None) -> dict:
    """Run the job described by ``cfg`` in ``run_dir``; return its record (also written to disk)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = list(overrides or [])
    if cfg.task not in TASKS:
        raise ValueError(f"task={cfg.task} is unknown; choose one of {', '.join(TASKS)}")
    previous = read_record(run_dir)
    if previous and previous.get("status") == "completed" and not cfg.rerun:
        print(f"skip: {run_dir / RECORD} is already completed (rerun=true recomputes it)")
        previous["skipped"] = True
        return previous

    device = pick_device(cfg.trainer.device)
    record: dict = {
        "status": "running", "task": cfg.task, "experiment": cfg.experiment, "overrides": overrides,
        "seed": int(cfg.seed), "config": OmegaConf.to_container(cfg, resolve=True), "metrics": None,
        "complexity": None, "timing": {}, "env": environment(device), "run_dir": str(run_dir),
    }
    logger = None
    t0 = time.perf_counter()
    try:
        seed_everything(int(cfg.seed))
        if cfg.task == "complexity":
            detector = build_detector(cfg)
            record["complexity"] = complexity(detector, int(cfg.data.image_size))
        elif cfg.task in ("fit", "eval"):
            logger = make_logger(cfg, run_dir, row_name(overrides))
            _fit_and_evaluate(cfg, run_dir, device, record, logger)
            logger.log_final(record["metrics"])
        else:
            from bench import visualize

            record["outputs"] = visualize.run_task(cfg, run_dir, device)
        record["status"] = "completed"
    except BaseException as exc:  # also an interrupt: the record says why the job ended
        record["status"] = "failed"
        record["error"] = one_line(exc)
        raise
    finally:
        record["timing"]["total_s"] = round(time.perf_counter() - t0, 3)
        write_json_atomic(run_dir / RECORD, record)
        if logger is not None:
            logger.finish(record["status"])
    return record
