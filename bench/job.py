"""One job: validate → build → fit → evaluate → write the run record (README "Commands").

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

from bench import checkpoint, groups, precision
from bench.atomic import remove_stale_temps
from bench.build import build_datasets, build_detector
from bench.complexity import complexity
from bench.curve import test_curve
from bench.errors import BenchError, RunDirRefused
from bench.evaluate import evaluate
from bench.feature_cache import dataset_features
from bench.fit import fit
from bench.fit_once import fit_statistics
from bench.lock import RunLock, describe
from bench.loggers import RunInfo, make_logger
from bench.record import RECORD, SCHEMA_VERSION, environment, read_record, write_json_atomic
from bench.validate import validate_config, validate_data
from reports.run_record import config_diff, shown_keys

log = logging.getLogger(__name__)

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


def _index_dir(paths: DictConfig) -> Path:
    """Where the dataset file index lives (``bench.file_index``): beside the feature cache."""
    return Path(str(paths.cache_root)).expanduser() / "files"


def _features(detector, dataset, cfg: DictConfig, split: str, device):
    """``(features, hit, key)`` of ``dataset`` from the feature cache (``bench.feature_cache``)."""
    return dataset_features(detector, dataset, split, data=cfg.data, backbone=cfg.backbone, cache=cfg.cache,
                            seed=int(cfg.seed), cache_root=str(cfg.paths.cache_root),
                            batch_size=int(cfg.eval.batch_size), num_workers=int(cfg.trainer.num_workers),
                            device=device)


def _eval_model(cfg: DictConfig, record: dict, overrides: list[str]) -> tuple[DictConfig, dict]:
    """task=eval: the checkpoint ``ckpt`` and ``cfg`` with its model (``checkpoint.model_config``)."""
    if not cfg.ckpt:
        raise BenchError("task=eval needs ckpt=PATH (a last.ckpt written by a fit job)")
    state = checkpoint.load(Path(cfg.ckpt), own=False)
    cfg, choices = checkpoint.model_config(cfg, state.get("config"), state.get("choices"), given=overrides,
                                           source=cfg.ckpt)
    record["config"] = OmegaConf.to_container(cfg, resolve=True)
    record["choices"] = {**record["choices"], **choices}
    record["checkpoint"] = {"path": str(cfg.ckpt), "epoch": state.get("epoch")}
    return cfg, state


def _fit_and_evaluate(cfg: DictConfig, run_dir: Path, device, record: dict, logger, overrides: list[str]) -> None:
    state = None
    if cfg.task == "eval":  # the model comes from the checkpoint: its group choices and plain values
        cfg, state = _eval_model(cfg, record, overrides)
    t0 = time.perf_counter()
    train_set, test_set = build_datasets(cfg.data)  # validates the layout before any training
    # every file decoded once before training (remembered per file version in the file index)
    validate_data([test_set] if cfg.task == "eval" else [train_set, test_set], _index_dir(cfg.paths))
    record["data"] = {"train_images": len(train_set), "test_images": len(test_set),
                      "categories": list(test_set.categories)}
    timing = record.setdefault("timing", {})
    timing["data_check_s"] = round(time.perf_counter() - t0, 3)
    detector = build_detector(cfg).to(device)
    record["complexity"] = complexity(detector, int(cfg.data.image_size))
    curve = None
    if state is not None:
        checkpoint.load_detector_state(detector, state["model"], cfg.ckpt)
    else:
        t0 = time.perf_counter()
        train_feats, hit, key = _features(detector, train_set, cfg, "train", device)
        timing["features_s"] = round(time.perf_counter() - t0, 3)
        record["cache"] = {"used": train_feats is not None, "hit": hit, "key": key}
        one_pass = detector.fits_by_statistics  # PaDiM, PatchCore: statistics in one pass, no epochs
        curve = None if one_pass else test_curve(
            cfg, run_dir, test_set, lambda: _features(detector, test_set, cfg, "test", device)[0], device, logger)
        fit_fn = fit_statistics if one_pass else fit
        timing.update(fit_fn(detector, train_set, cfg.trainer, run_dir=run_dir, device=device, seed=int(cfg.seed),
                             features=train_feats, logger=logger, config=record["config"],  # ckpt carries them
                             choices=record["choices"], **({"on_epoch": curve} if curve else {})))
    if detector.fits_by_statistics:  # what it stores is known once fitted
        record["complexity"] = complexity(detector, int(cfg.data.image_size))
    test_feats, _, test_key = _features(detector, test_set, cfg, "test", device)
    if "cache" in record:
        record["cache"]["test_key"] = test_key
    record["metrics"], eval_timing = evaluate(detector, test_set, cfg.eval, device=device, features=test_feats,
                                              run_dir=run_dir, logger=logger)
    timing.update(eval_timing)
    if curve is not None:  # eval.every: the test curve, its last point the metrics above
        record["curve"] = curve.finish(record["metrics"], eval_timing.get("eval_s"), eval_timing.get("conventions_s"))


def _skip_completed(run_dir: Path, cfg: DictConfig, overrides: list[str]) -> dict | None:
    """The completed record of ``run_dir`` when this job would recompute it (``rerun=false``), else None.

    The record must be this job's: its config equals the job's outside the keys neutral for a skip
    (``reports.run_record.NEUTRAL``; the device compared as the type each ran on), else the job stops
    with the differing keys and the record is left as it is (a skip never hands one run's numbers to
    another config, e.g. ``model=mlp`` in a UniAD run's dir, or a sweep over another ``paths.data_root``).
    """
    if cfg.rerun:
        return None
    previous = read_record(run_dir)
    if not previous or previous.get("status") != "completed":
        return None
    path = run_dir / RECORD
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
        if cfg.task == "eval":  # its record holds the checkpoint's model: compare like with like
            config = OmegaConf.to_container(_eval_model(cfg, {"choices": {}}, overrides)[0], resolve=True)
    except BenchError as exc:
        raise _unrecorded(BenchError(f"{path} is completed, and this job cannot be compared with it: {exc}")) from None
    except Exception as exc:
        raise _unrecorded(BenchError(f"{path} is completed, and this job's config cannot be resolved to compare "
                                     f"with it ({one_line(exc)})")) from None
    saved = previous.get("config")
    diff = ["config"] if not isinstance(saved, dict) else config_diff(
        checkpoint.with_device(saved, _device_type(previous)), checkpoint.with_device(config, _job_device(cfg.trainer)),
        "skip")
    if diff:
        raise _unrecorded(RunDirRefused(
            f"{path} is a completed record of another config ({shown_keys(diff)}): pass rerun=true to replace it "
            "(the old files move to .previous/), or use a new run dir"))
    log.info(f"skip: {path} is already completed (rerun=true recomputes it)")
    previous["skipped"] = True
    return previous


def _unrecorded(exc: BenchError) -> BenchError:
    exc.record_path = None  # type: ignore[attr-defined]  # nothing written: the completed record stays
    return exc


def _device_type(record: dict) -> str | None:
    """The device type a record's job ran on (``env.device`` reads "cpu: ..." / "cuda: ...")."""
    env = record.get("env") if isinstance(record.get("env"), dict) else {}
    device = env.get("device")
    return device.split(":", 1)[0] if isinstance(device, str) and ":" in device else None


def _job_device(trainer: DictConfig) -> str | None:
    try:
        return pick_device(trainer.device).type
    except (RuntimeError, TypeError):
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


def run(cfg: DictConfig, run_dir: str | Path, overrides: list[str] | None = None,
        choices: dict | None = None) -> dict:
    """Run the job described by ``cfg`` in ``run_dir``; return its record (also written to disk).

    ``overrides``: the command line's; ``choices``: the config-group choices Hydra composed ``cfg`` from
    (``bench.groups.job_choices``; without them, as tests call it, the model groups' are read from the
    values that name them).

    Returns ``{"status": "skipped", "locked_by": owner}`` without writing anything when another live job
    holds the run dir's lock.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    overrides = list(overrides or [])
    done = _skip_completed(run_dir, cfg, overrides)
    if done is not None:
        return done
    lock = RunLock(run_dir, float(cfg.lock_stale_h) * 3600)
    if not lock.acquire():
        log.warning(f"skip: {run_dir} is being run by {describe(lock.owner)}; that job writes its record")
        return {"status": "skipped", "skipped": True, "locked_by": lock.owner, "run_dir": str(run_dir)}
    try:
        done = _skip_completed(run_dir, cfg, overrides)  # the job before us may have completed it meanwhile
        if done is not None:
            return done
        if cfg.rerun:
            move_aside(run_dir)
        remove_stale_temps(run_dir, [RECORD, checkpoint.CKPT])  # left by a killed job; the lock is ours
        return _run(cfg, run_dir, overrides, choices)
    finally:
        lock.release()


def _run(cfg: DictConfig, run_dir: Path, overrides: list[str], choices: dict | None) -> dict:
    record: dict = {
        "schema": SCHEMA_VERSION, "status": "running", "task": cfg.task, "experiment": cfg.experiment,
        "overrides": overrides, "choices": dict(choices) if choices is not None else {},
        "seed": cfg.seed, "config": None, "metrics": None, "complexity": None, "timing": {}, "env": None,
        "run_dir": str(run_dir),
    }
    logger = None
    t0 = time.perf_counter()
    try:
        try:
            record["config"] = OmegaConf.to_container(cfg, resolve=True)
            if choices is None:
                record["choices"] = groups.infer_choices(record["config"])
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
            logger = make_logger(cfg.logger, run_dir, RunInfo(
                experiment=cfg.experiment, row=row_name(overrides), seed=cfg.seed, dataset=cfg.data.name,
                config=record["config"]))
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
