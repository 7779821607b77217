"""One job: resolve → validate → build → fit → evaluate → write the run record (README).

``run(cfg, run_dir)`` is importable (tests call it directly); ``bench/__main__.py`` only wraps it. The
config is resolved once (``bench.resolve``: the values checked, the device, task=eval's checkpoint
model) and every stage receives that ``Job``. The run dir (``bench.run_dir``) skips a completed record
or a cell another live job holds, and moves old files aside under ``rerun=true``. A failed job still
writes its record (``record.parts``), with ``status: failed`` and a one-line ``error``; where even that
cannot be written (disk full) the exception carries ``record_path=None`` so nobody is pointed at a
record that does not exist.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from bench import checkpoint, precision
from bench.build import build_datasets, build_detector
from bench.complexity import complexity
from bench.curve import test_curve
from bench.errors import BenchError, one_line
from bench.evaluate import evaluate
from bench.feature_cache import file_index_dir, job_features
from bench.fit import fit
from bench.fit_once import fit_statistics
from bench.loggers import RunInfo, make_logger
from bench.provenance import environment
from bench.resolve import Job, Unresolved, resolve_job
from bench.run_dir import RunDir
from bench.validate import validate_data
from record import CacheUse, CheckpointUse, DataSummary, RunRecord, record_path, started, write_record

log = logging.getLogger(__name__)

__all__ = ["one_line", "row_name", "run", "seed_everything"]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def row_name(overrides: list[str]) -> str:
    """The table row of a job: its overrides without the seed and the experiment."""
    keep = [o for o in overrides if o.split("=")[0].lstrip("+") not in ("seed", "experiment")]
    return ",".join(keep)


def run(cfg: DictConfig, run_dir: str | Path, overrides: list[str] | None = None,
        choices: dict | None = None) -> dict:
    """Run the job described by ``cfg`` in ``run_dir``; return its record (also written to disk).

    ``overrides``: the command line's; ``choices``: the config-group choices Hydra composed ``cfg`` from
    (``bench.groups.job_choices``; without them, as tests call it, the model groups' are read from the
    values that name them).

    Returns ``{"status": "skipped", "locked_by": owner}`` without writing anything when another live job
    holds the run dir's lock.
    """
    run_dir, overrides = Path(run_dir), list(overrides or [])
    try:
        job: Job | Unresolved = resolve_job(cfg, run_dir, overrides, choices)
    except Unresolved as unresolved:
        job = unresolved
    with RunDir(run_dir, job, cfg.rerun, float(cfg.lock_stale_h) * 3600) as claim:
        return claim.done if claim.done is not None else _run(cfg, run_dir, job, overrides)


def _run(cfg: DictConfig, run_dir: Path, job: Job | Unresolved, overrides: list[str]) -> dict:
    record = started(task=cfg.task, experiment=cfg.experiment, overrides=overrides, choices=job.choices,
                     seed=job.cfg.seed if isinstance(job, Job) else cfg.seed, run_dir=str(run_dir), config=job.config)
    logger = None
    t0 = time.perf_counter()
    try:
        if isinstance(job, Unresolved):
            if job.device is not None:  # stopped at task=eval's checkpoint: where it would have run is known
                record.env = {**environment(job.device), **precision.provenance(cfg, job.device)}
            raise job.cause
        record.env = {**environment(job.device), **precision.provenance(job.cfg, job.device)}
        seed_everything(int(job.cfg.seed))
        if job.state is not None:
            record.checkpoint = CheckpointUse(path=str(job.cfg.ckpt), epoch=job.state.get("epoch"))
        if job.task == "complexity":
            record.complexity = complexity(build_detector(job.cfg), int(job.cfg.data.image_size))
        elif job.task in ("fit", "eval"):
            logger = make_logger(job.cfg.logger, run_dir, RunInfo(
                experiment=job.cfg.experiment, row=row_name(list(job.overrides)), seed=job.cfg.seed,
                dataset=job.cfg.data.name, config=job.config))
            _fit_and_evaluate(job, record, logger)
            logger.log_final(record.metrics)
        elif job.task == "predict":
            record.outputs = _predict(job)
        else:
            from bench import visualize

            record.outputs = visualize.run_task(job)
        record.completed()
    except BaseException as exc:  # also an interrupt: the record says why the job ended
        record.failed(one_line(exc))
        exc.record_path = _write(record, t0)  # type: ignore[attr-defined]
        _finish(logger, record)
        raise
    if _write(record, t0) is None:
        _finish(logger, record)
        raise BenchError(f"the job completed but its record {record_path(run_dir)} could not be written (disk full?)")
    _finish(logger, record)
    return record.to_json()


def _fit_and_evaluate(job: Job, record: RunRecord, logger) -> None:
    cfg, device, timing = job.cfg, job.device, record.timing
    t0 = time.perf_counter()
    train_set, test_set = build_datasets(cfg.data)  # validates the layout before any training
    # every file decoded once before training (remembered per file version in the file index)
    validate_data([test_set] if job.task == "eval" else [train_set, test_set], file_index_dir(cfg.paths))
    record.data = DataSummary(train_images=len(train_set), test_images=len(test_set),
                              categories=list(test_set.categories))
    timing["data_check_s"] = round(time.perf_counter() - t0, 3)
    detector = build_detector(cfg).to(device)
    record.complexity = complexity(detector, int(cfg.data.image_size))
    curve = None
    if job.state is not None:
        checkpoint.load_detector_state(detector, job.state["model"], cfg.ckpt)
    else:
        t0 = time.perf_counter()
        train_feats, hit, key = job_features(detector, train_set, cfg, "train", device)
        timing["features_s"] = round(time.perf_counter() - t0, 3)
        record.cache = CacheUse(used=train_feats is not None, hit=hit, key=key)
        one_pass = detector.fits_by_statistics  # PaDiM, PatchCore: statistics in one pass, no epochs
        curve = None if one_pass else test_curve(
            cfg, job.run_dir, test_set, lambda: job_features(detector, test_set, cfg, "test", device)[0], device,
            logger)
        fit_fn = fit_statistics if one_pass else fit
        timing.update(fit_fn(detector, train_set, cfg.trainer, run_dir=job.run_dir, device=device, seed=int(cfg.seed),
                             features=train_feats, logger=logger, config=job.config,  # ckpt carries them
                             choices=job.choices, **({"on_epoch": curve} if curve else {})))
    if detector.fits_by_statistics:  # what it stores is known once fitted
        record.complexity = complexity(detector, int(cfg.data.image_size))
    test_feats, _, test_key = job_features(detector, test_set, cfg, "test", device)
    if record.cache is not None:
        record.cache.test_key = test_key
    record.metrics, eval_timing = evaluate(detector, test_set, cfg.eval, device=device, features=test_feats,
                                           run_dir=job.run_dir, logger=logger)
    timing.update(eval_timing)
    if curve is not None:  # eval.every: the test curve, its last point the metrics above
        record.curve = curve.finish(record.metrics, eval_timing.get("eval_s"), eval_timing.get("conventions_s"))


def _predict(job: Job) -> dict:
    """task=predict: the checkpoint's model scores the folder ``predict.input`` (``bench.predict``)."""
    from bench.predict import predict_folder

    detector = build_detector(job.cfg).to(job.device)
    checkpoint.load_detector_state(detector, job.state["model"], job.cfg.ckpt)
    return predict_folder(detector, job.cfg, job.run_dir, job.device)


def _write(record: RunRecord, t0: float) -> Path | None:
    """Write the record; return its path, or None (logged) when it cannot be written (disk full)."""
    record.timing["total_s"] = round(time.perf_counter() - t0, 3)
    try:
        return write_record(record.run_dir, record.to_json())
    except OSError as exc:
        log.error(f"could not write the record {record_path(record.run_dir)}: {exc}")
        return None


def _finish(logger, record: RunRecord) -> None:
    if logger is not None:
        try:
            logger.finish(record.status)
        except Exception as exc:  # the record is what counts; a logger that fails to close must not hide it
            log.warning(f"logger did not finish cleanly: {exc}")
