"""Build a job's objects from its config: datasets, detector, optimizer (only ``bench/`` reads configs)."""

from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

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
    a one-pass statistics method, no loss)."""
    loss = instantiate_node(cfg.loss)
    if cfg.model.input == "image":
        return ImageDetector(instantiate_node(cfg.model), loss)
    backbone = instantiate_node(cfg.backbone, name=cfg.backbone.name)
    if cfg.model.input == "frozen_features":  # PaDiM, PatchCore: statistics fitted in one pass
        from models.detector import StatisticsDetector

        method = instantiate_node(cfg.model, stage_channels=backbone.channels,
                                  available_stages=list(cfg.backbone.outlayers), feature_size=feature_size(cfg))
        return StatisticsDetector(backbone, method)
    reconstruction = instantiate_node(
        cfg.model, in_channels=backbone.out_channels, feature_size=feature_size(cfg)
    )
    return FeatureDetector(backbone, reconstruction, loss)


def build_datasets(cfg: DictConfig):
    """(train, test) datasets of ``cfg.data``; bad input raises ``data.errors.DatasetError``."""
    data = cfg.data
    size = int(data.image_size)
    categories = list(data.categories) if data.get("categories") else None
    if "_target_" in data:  # a reader named by its YAML (README, datasets); profile keys are not arguments
        node = {k: v for k, v in OmegaConf.to_container(data, resolve=True).items()
                if k not in (*_META_KEYS, "outlayers", "score", "generator")}
        return instantiate(node, split="train"), instantiate(node, split="test")
    if data.name == "cifar10":
        from data.cifar10 import Cifar10ManyVsMany

        classes = list(data.normal_classes)
        return (
            Cifar10ManyVsMany(data.root, "train", classes, image_size=size),
            Cifar10ManyVsMany(data.root, "test", classes, image_size=size),
        )
    if data.name == "folder":
        from data.folder import FolderDataset

        layout = {k: data.get(k) for k in ("train_dir", "test_dir", "labels", "mask_dir")}
        return (
            FolderDataset(data.root, "train", categories=categories, image_size=size, **layout),
            FolderDataset(data.root, "test", categories=categories, image_size=size, **layout),
        )
    from data.mvtec import MVTecDataset

    root = data.root
    if data.name == "synthetic":
        from data.synthetic import ensure

        root = ensure(data.root, **OmegaConf.to_container(data.generator, resolve=True))
    elif data.name != "mvtec":
        raise ValueError(f"data={data.name} is unknown; choose synthetic, mvtec, folder or cifar10")
    return (
        MVTecDataset(root, "train", categories=categories, image_size=size),
        MVTecDataset(root, "test", categories=categories, image_size=size),
    )


def learnable_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]
