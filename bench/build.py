"""Build a job's objects from its config: datasets, detector, optimizer (only ``bench/`` reads configs)."""

from __future__ import annotations

from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from bench.errors import BenchError
from data.errors import DatasetError
from data.protocol import CONFIG_ONLY_KEYS, AnomalyDataset
from models.detector import FeatureDetector, ImageDetector

# keys of a config node that describe it but are not constructor arguments
_META_KEYS = ("name", "input")


def instantiate_node(node: DictConfig, **kwargs):
    """``hydra.utils.instantiate`` without the descriptive keys (name, input)."""
    clean = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in _META_KEYS}
    return instantiate(clean, **kwargs, _convert_="all")


def feature_size(cfg: DictConfig) -> tuple[int, int]:
    side = int(cfg.data.image_size) // int(cfg.backbone.feature_stride)
    return side, side


def build_detector(cfg: DictConfig) -> nn.Module:
    """Backbone + reconstruction model + loss, as the model's ``input`` says (``frozen_features``:
    a one-pass statistics method, no loss; ``tokens``: the model's ``_target_`` is the detector itself)."""
    loss = instantiate_node(cfg.loss)
    if cfg.model.input == "image":
        return ImageDetector(instantiate_node(cfg.model), loss)
    backbone = instantiate_node(cfg.backbone, name=cfg.backbone.name)
    if cfg.model.input == "tokens":  # Dinomaly: the detector sizes its decoder from the backbone
        return instantiate_node(cfg.model, backbone=backbone, loss=loss)
    if cfg.model.input == "frozen_features":  # PaDiM, PatchCore: statistics fitted in one pass
        from models.detector import StatisticsDetector

        method = instantiate_node(cfg.model, stage_channels=backbone.channels,
                                  available_stages=list(backbone.stages), feature_size=feature_size(cfg))
        return StatisticsDetector(backbone, method)
    reconstruction = instantiate_node(
        cfg.model, in_channels=backbone.out_channels, feature_size=feature_size(cfg)
    )
    return FeatureDetector(backbone, reconstruction, loss)


def build_dataset(data: DictConfig, split: str) -> AnomalyDataset:
    """The ``split`` ("train" or "test") of the reader that ``data._target_`` names, built from the node's
    keys except ``data.protocol.CONFIG_ONLY_KEYS``; bad input raises ``data.errors.DatasetError`` (naming
    ``paths.data_root`` and ``UNIAD_BENCH_DATA`` when a missing root derives from them)."""
    if OmegaConf.is_missing(data, "root"):
        raise BenchError(f"data={data.get('name')} needs its dataset folder: pass data.root=/path/to/your/dataset")
    node = {k: v for k, v in OmegaConf.to_container(data, resolve=True).items() if k not in CONFIG_ONLY_KEYS}
    if "_target_" not in node:
        raise BenchError(f"data={data.get('name')} names no reader: its YAML needs _target_: data.<module>.<Class>")
    resize = node.pop("resize", None)  # read at data.resize px, centre-cropped to data.image_size (data/cropped.py)
    size = node["image_size"]
    if resize is not None:
        if int(resize) < int(size):
            raise BenchError(f"data.resize={resize} is below data.image_size={size}: the centre crop "
                             "must fit; give data.resize >= data.image_size or null")
        node["image_size"] = int(resize)
    try:
        dataset = instantiate(node, split=split, _convert_="all")
    except Exception as exc:
        cause = exc
        while cause.__cause__ is not None and type(cause).__name__ == "InstantiationException":
            cause = cause.__cause__
        if not isinstance(cause, DatasetError):
            raise
        hint = _derived_root_hint(data)
        raise DatasetError(f"{cause} ({hint})" if hint else str(cause)) from None
    if resize is None:
        return dataset
    from data.cropped import CenterCropped

    return CenterCropped(dataset, size)


def _derived_root_hint(data: DictConfig) -> str | None:
    """How to point a missing ``data.root`` that derives from ``paths.data_root`` elsewhere, else None."""
    raw = OmegaConf.to_container(data, resolve=False).get("root")
    root = data.get("root")
    if not isinstance(raw, str) or "paths.data_root" not in raw or Path(str(root)).expanduser().is_dir():
        return None
    return (f"data.root={root} is {raw}: set the env var UNIAD_BENCH_DATA or paths.data_root= to the folder "
            "holding your datasets, or data.root= to this one")


def build_datasets(data: DictConfig) -> tuple[AnomalyDataset, AnomalyDataset]:
    """(train, test) sets of the data node (``data.protocol.AnomalyDataset``)."""
    return build_dataset(data, "train"), build_dataset(data, "test")


def learnable_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]
