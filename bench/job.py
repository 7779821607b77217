"""One job: validate → build → fit → evaluate → write the run record (DESIGN.md section 4).

``run(cfg, run_dir)`` is importable (tests call it directly); ``bench/__main__.py`` only wraps it.
A job whose run dir already holds a completed record is skipped; ``rerun=true`` moves the old record
and checkpoint to ``<run dir>/.previous/<time>/`` (hidden: reports never collect it) and starts
over. A run dir is locked while its job runs (``bench.lock``): a second job for the same cell skips
it. Everything that can be checked without training is checked first (``bench.validate``). A failed
job still writes its record, with ``status: failed`` and a one-line ``error``; where even that cannot
be written (disk full) the exception carries ``record_path=None`` so nobody is pointed at a record
that does not exist.
"""

from __future__ import annotations

import logging
import random
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from bench import checkpoint, precision
from bench.build import build_datasets, build_detector
from bench.complexity import complexity
from bench.curve import test_curve
from bench.errors import BenchError
from bench.evaluate import evaluate
from bench.feature_cache import cached_features
from bench.file_index import FileIndex
from bench.fit import fit
from bench.fit_once import fit_statistics
from bench.lock import RunLock, describe
from bench.loggers import make_logger
from bench.record import RECORD, environment, read_record, write_json_atomic
from bench.validate import validate_config, validate_data
from reports.run_record import config_diff

log = logging.getLogger(__name__)

# What makes the model a function: task=eval and vis_recon rebuild it from the checkpoint's values of these.
ARCHITECTURE_KEYS = ("model", "decoder", "arch", "loss", "backbone", "data.image_size", "data.outlayers")

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


def _index_dir(cfg) -> Path:
    """Where the dataset file index lives (``bench.file_index``): beside the feature cache."""
    return Path(str(cfg.paths.cache_root)).expanduser() / "files"


def _features(detector, dataset, cfg, split: str, device, info: dict | None = None):
    """Cached frozen features of ``dataset``, or None when the features can change (S5, images).

    The key holds everything that determines the features; for a randomly initialised backbone
    (``backbone.weights=none``) that includes the seed, for a weights file its content. ``info``
    receives the key used (for the record).
    """
    if not (cfg.cache.features and detector.frozen_target):
        return None, None
    data = OmegaConf.to_container(cfg.data, resolve=True)
    parts = {
        "data": data["name"], "root": str(Path(str(data["root"])).expanduser()),
        **{k: data.get(k) for k in ("generator", "categories", "normal_classes")},
        "backbone": cfg.backbone.timm_name, "weights": str(cfg.backbone.weights),
        "outlayers": list(cfg.backbone.outlayers), "image_size": int(cfg.data.image_size),
        "feature_stride": int(cfg.backbone.feature_stride),
    }
    weights = str(cfg.backbone.weights)
    if weights == "none":  # random init: the seed draws the backbone
        parts["seed"] = int(cfg.seed)
    elif Path(weights).expanduser().is_file():  # a weights file: its content, not its name
        path = Path(weights).expanduser()
        parts["weights_sha256"] = FileIndex(_index_dir(cfg), path.parent).digest(str(path))
    root = cfg.paths.cache_root if cfg.cache.disk else None
    feats, hit = cached_features(detector, dataset, split=split, key_parts=parts, cache_root=root,
                                 dtype=cfg.cache.dtype, batch_size=int(cfg.eval.batch_size),
                                 device=device, num_workers=int(cfg.trainer.num_workers), info=info)
    return feats, hit


def _checkpoint_config(cfg: DictConfig, state: dict, overrides: list[str], path) -> DictConfig:
    """``cfg`` with the model rebuilt as the checkpoint says (``ARCHITECTURE_KEYS`` from its config).

    The data, evaluation and device stay the command line's. An architecture key that differs from
    the checkpoint because the command line set it (``decoder=...``, ``arch.hidden_dim=...``,
    ``profile=...``) is a conflict: one line naming the keys, nothing built.
    """
    saved = state.get("config")
    if not isinstance(saved, dict):
        log.warning(f"checkpoint {path} does not record its config (an older one): the model is built from "
                    "this command line's config")
        return cfg
    current = OmegaConf.to_container(cfg, resolve=True)
    diff = config_diff(saved, current, "skip", only=ARCHITECTURE_KEYS)
    given = [o.split("=", 1)[0].lstrip("+~") for o in overrides if "=" in o]
    # a profile given on the command line conflicts when it is not the checkpoint's (it sets the sizes)
    other_profile = "profile" in given and saved.get("profile_name") != current.get("profile_name")
    conflicts = [k for k in diff if other_profile
                 or any(k == g or k.startswith(g + ".") or g.startswith(k + ".") for g in given)]
    if conflicts:
        shown = ", ".join(conflicts[:6]) + (f" (+{len(conflicts) - 6} more)" if len(conflicts) > 6 else "")
        raise BenchError(f"checkpoint {path} was trained with another architecture than the command line asks "
                         f"({shown}): drop those overrides (the model is rebuilt from the checkpoint)")
    merged = OmegaConf.create(current)
    flat_saved = OmegaConf.create(saved)
    for key in ARCHITECTURE_KEYS:
        value = OmegaConf.select(flat_saved, key)
        if value is not None:
            OmegaConf.update(merged, key, value, merge=False)
    if diff:
        log.info(f"model rebuilt from checkpoint {path} ({len(diff)} architecture keys differ from the defaults)")
    return merged


def _fit_and_evaluate(cfg: DictConfig, run_dir: Path, device, record: dict, logger, overrides: list[str]) -> None:
    state = None
    if cfg.task == "eval":  # the model comes from the checkpoint, config included
        if not cfg.ckpt:
            raise BenchError("task=eval needs ckpt=PATH (a last.ckpt written by a fit job)")
        state = checkpoint.load(Path(cfg.ckpt), own=False)
        cfg = _checkpoint_config(cfg, state, overrides, cfg.ckpt)
        record["config"] = OmegaConf.to_container(cfg, resolve=True)
        record["checkpoint"] = {"path": str(cfg.ckpt), "epoch": state.get("epoch")}
    t0 = time.perf_counter()
    train_set, test_set = build_datasets(cfg)  # validates the layout before any training
    # every file decoded once before training (remembered per file version in the file index)
    validate_data([test_set] if cfg.task == "eval" else [train_set, test_set], _index_dir(cfg))
    record["data"] = {"train_images": len(train_set), "test_images": len(test_set),
                      "categories": list(getattr(test_set, "categories", []))}
    timing = record.setdefault("timing", {})
    timing["data_check_s"] = round(time.perf_counter() - t0, 3)
    detector = build_detector(cfg).to(device)
    record["complexity"] = complexity(detector, int(cfg.data.image_size))
    curve = None
    if state is not None:
        checkpoint.load_detector_state(detector, state["model"], cfg.ckpt)
    else:
        t0 = time.perf_counter()
        info: dict = {}
        train_feats, hit = _features(detector, train_set, cfg, "train", device, info)
        timing["features_s"] = round(time.perf_counter() - t0, 3)
        record["cache"] = {"used": train_feats is not None, "hit": hit, "key": info.get("key")}
        fit_fn = fit_statistics if getattr(detector, "fits_by_statistics", False) else fit  # PaDiM, PatchCore
        curve = None if fit_fn is fit_statistics else test_curve(
            cfg, run_dir, test_set, lambda: _features(detector, test_set, cfg, "test", device)[0], device, logger)
        timing.update(fit_fn(detector, train_set, cfg.trainer, run_dir=run_dir, device=device, seed=int(cfg.seed),
                             features=train_feats, logger=logger, config=record["config"],  # ckpt carries it
                             **({"on_epoch": curve} if curve else {})))
    if getattr(detector, "fits_by_statistics", False):  # what it stores is known once fitted
        record["complexity"] = complexity(detector, int(cfg.data.image_size))
    test_info: dict = {}
    test_feats, _ = _features(detector, test_set, cfg, "test", device, test_info)
    if "cache" in record:
        record["cache"]["test_key"] = test_info.get("key")
    record["metrics"], eval_timing = evaluate(detector, test_set, cfg.eval, device=device, features=test_feats,
                                              run_dir=run_dir, logger=logger)
    timing.update(eval_timing)
    if curve is not None:  # eval.every: the test curve, its last point the metrics above
        record["curve"] = curve.finish(record["metrics"], eval_timing.get("eval_s"))


def _skip_completed(run_dir: Path, cfg: DictConfig) -> dict | None:
    previous = read_record(run_dir)
    if previous and previous.get("status") == "completed" and not cfg.rerun:
        log.info(f"skip: {run_dir / RECORD} is already completed (rerun=true recomputes it)")
        previous["skipped"] = True
        return previous
    return None


def move_aside(run_dir: Path) -> Path | None:
    """rerun=true: move the record, the checkpoint and the example maps to ``.previous/<time>/``."""
    names = [n for n in (RECORD, checkpoint.CKPT, "maps") if (run_dir / n).exists()]
    if not names:
        return None
    dest = run_dir / ".previous" / time.strftime("%Y%m%d-%H%M%S")
    while dest.exists():
        dest = dest.with_name(dest.name + "+")
    dest.mkdir(parents=True)
    for name in names:
        shutil.move(str(run_dir / name), str(dest / name))
    log.info(f"rerun=true: moved {', '.join(names)} to {dest}; starting over")
    return dest


def run(cfg: DictConfig, run_dir: str | Path, overrides: list[str] | None = None) -> dict:
    """Run the job described by ``cfg`` in ``run_dir``; return its record (also written to disk).

    Returns ``{"status": "skipped", "locked_by": owner}`` without writing anything when another live job
    holds the run dir's lock.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = list(overrides or [])
    done = _skip_completed(run_dir, cfg)
    if done is not None:
        return done
    lock = RunLock(run_dir, float(cfg.lock_stale_h) * 3600)
    if not lock.acquire():
        log.warning(f"skip: {run_dir} is being run by {describe(lock.owner)}; that job writes its record")
        return {"status": "skipped", "skipped": True, "locked_by": lock.owner, "run_dir": str(run_dir)}
    try:
        done = _skip_completed(run_dir, cfg)  # the job before us may have completed it meanwhile
        if done is not None:
            return done
        if cfg.rerun:
            move_aside(run_dir)
        return _run(cfg, run_dir, overrides)
    finally:
        lock.release()


def _run(cfg: DictConfig, run_dir: Path, overrides: list[str]) -> dict:
    record: dict = {
        "status": "running", "task": cfg.task, "experiment": cfg.get("experiment"), "overrides": overrides,
        "seed": cfg.get("seed"), "config": None, "metrics": None, "complexity": None, "timing": {}, "env": None,
        "run_dir": str(run_dir),
    }
    logger = None
    t0 = time.perf_counter()
    try:
        try:
            record["config"] = OmegaConf.to_container(cfg, resolve=True)
        except Exception:
            record["config"] = OmegaConf.to_container(cfg, resolve=False)
            raise
        if cfg.task not in TASKS:
            raise BenchError(f"task={cfg.task} is unknown; choose one of {', '.join(TASKS)}")
        validate_config(cfg)
        device = pick_device(cfg.trainer.device)
        record["env"] = {**environment(device), **precision.provenance(cfg, device)}
        seed_everything(int(cfg.seed))
        if cfg.task == "complexity":
            detector = build_detector(cfg)
            record["complexity"] = complexity(detector, int(cfg.data.image_size))
        elif cfg.task in ("fit", "eval"):
            logger = make_logger(cfg, run_dir, row_name(overrides))
            _fit_and_evaluate(cfg, run_dir, device, record, logger, overrides)
            logger.log_final(record["metrics"])
        else:
            from bench import visualize

            record["outputs"] = visualize.run_task(cfg, run_dir, device)
        record["status"] = "completed"
    except BaseException as exc:  # also an interrupt: the record says why the job ended
        record["status"] = "failed"
        record["error"] = one_line(exc)
        exc.record_path = _write_record(run_dir, record, t0)  # type: ignore[attr-defined]
        _finish(logger, record)
        raise
    if _write_record(run_dir, record, t0) is None:
        _finish(logger, record)
        raise BenchError(f"the job completed but its record {run_dir / RECORD} could not be written (disk full?)")
    _finish(logger, record)
    return record


def _write_record(run_dir: Path, record: dict, t0: float) -> Path | None:
    """Write the record; return its path, or None (logged) when it cannot be written (disk full)."""
    record["timing"]["total_s"] = round(time.perf_counter() - t0, 3)
    path = run_dir / RECORD
    try:
        write_json_atomic(path, record)
    except OSError as exc:
        log.error(f"could not write the record {path}: {exc}")
        return None
    return path


def _finish(logger, record: dict) -> None:
    if logger is not None:
        try:
            logger.finish(record["status"])
        except Exception as exc:  # the record is what counts; a logger that fails to close must not hide it
            log.warning(f"logger did not finish cleanly: {exc}")
