"""Everything a job can check before it trains, checked before it trains (README "Bad input").

``validate_config`` runs first, on the config alone (no data, no model): metric names, the normal-pixel
budget, epochs, categories, seed, device. ``validate_data`` then decodes every train and test image
and mask completely, so a truncated or empty file stops the job in one line before the first epoch
instead of in the middle of training or evaluation (each file is decoded once per version: the
result is remembered in ``bench.file_index``). Every problem raises ``BenchError`` (or the dataset's
``DatasetError``) with one line naming the key or file and what to do.
"""

from __future__ import annotations

import numbers
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig

from bench.errors import BenchError
from bench.file_index import FileIndex
from bench.metrics import resolve_metrics


def _integer(value, key: str, *, minimum: int | None = None) -> int:
    # bool is an int to Python, 2.7 and "3" are not integers: all three are refused
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise BenchError(f"{key}={value!r} is not an integer: give a whole number, e.g. {key}={minimum or 1}")
    if minimum is not None and value < minimum:
        raise BenchError(f"{key}={value} must be at least {minimum}")
    return int(value)


def validate_config(cfg: DictConfig) -> None:
    """The checks that need only the config; raises ``BenchError`` on the first problem."""
    _integer(cfg.seed, "seed")
    if cfg.task in ("fit", "train_vis_decoder"):
        _integer(cfg.trainer.epochs, "trainer.epochs", minimum=1)
    if cfg.task in ("fit", "eval"):
        metrics = cfg.eval.metrics
        try:
            resolve_metrics(list(metrics) if isinstance(metrics, ListConfig) else metrics)
        except ValueError as exc:
            raise BenchError(f"eval.metrics: {exc}") from None
        budget = cfg.eval.normal_pixel_budget
        if budget is not None:
            _integer(budget, "eval.normal_pixel_budget", minimum=1)
    categories = cfg.data.get("categories")
    if categories is not None and isinstance(categories, ListConfig | list) and len(categories) == 0:
        raise BenchError("data.categories=[] selects no category: give null (all categories) or a list of names")
    device = str(cfg.trainer.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"trainer.device={device} but CUDA is not available here: use trainer.device=auto or cpu")
    if device not in ("auto", "None"):
        try:
            torch.device(device)
        except RuntimeError:
            raise BenchError(f"trainer.device={device} is not a device: use auto, cpu or cuda[:N]") from None


def validate_data(datasets, index_dir: str | Path | None) -> None:
    """Decode every file of ``datasets`` (objects with ``verify(check)``, e.g. ``MVTecDataset``) before training.

    ``index_dir`` holds the file index (``bench.file_index``): a file decoded before and unchanged since
    is not decoded again. Datasets without ``verify`` (CIFAR-10, arrays in memory) have nothing to check.
    """
    from data.errors import DatasetError
    from data.transforms import check_image

    def checked(path: str, index: FileIndex) -> str:
        try:
            return index.digest(path, check=check_image)
        except OSError as error:  # gone or unreadable since the layout scan
            raise DatasetError(f"unreadable image {path} ({error.strerror or error}): replace or remove the file") \
                from None

    for dataset in datasets:
        if not hasattr(dataset, "verify"):
            continue
        index = FileIndex.for_dataset(index_dir, dataset)
        try:
            dataset.verify(lambda path, index=index: checked(path, index))
        finally:
            index.save()
