"""Every config option composes, instantiates and trains one step: every variant runs from the command line."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from bench.build import build_detector, instantiate_node
from models.detector import FeatureDetector
from reports.declaration import table_specs
from tests.conftest import CONF, compose_cfg

DECODERS = sorted(p.stem for p in Path(CONF, "decoder").glob("*.yaml"))
LOSSES = sorted(p.stem for p in Path(CONF, "loss").glob("*.yaml"))
BACKBONES = sorted(p.stem for p in Path(CONF, "backbone").glob("*.yaml"))
EXPERIMENTS = sorted(p.stem for p in Path(CONF, "experiment").glob("*.yaml"))
MODELS = sorted(p.stem for p in Path(CONF, "model").glob("*.yaml"))


class _TinyBackbone(torch.nn.Module):
    """Stands in for the frozen backbone so that hundreds of variants train in seconds."""

    frozen = True
    out_channels = 8

    def forward(self, images):
        return torch.nn.functional.avg_pool2d(images, 16).repeat(1, 3, 1, 1)[:, :8]


def _one_step(detector):
    images = torch.randn(2, 3, 64, 64)
    params = [p for p in detector.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, 1e-3)
    detector.train()
    target = detector.target(images)
    loss = detector.loss(target, detector.reconstruct(target))
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    detector.eval()
    with torch.no_grad():
        amap = detector(images) if not isinstance(detector, FeatureDetector) else detector.anomaly_map(
            target, detector.reconstruct(target), images.shape[-2:])
    assert amap.shape == (2, 1, 64, 64)


def test_the_papers_options_exist():
    assert DECODERS == sorted(["none", "query1", *[f"lqd_{c}" for c in "abcdef"]])
    assert LOSSES == ["cosine", "dinomaly_hm", "mse", "norm_mse"]
    assert set(BACKBONES) >= {"efficientnet_lite0", "efficientnet_b0", "efficientnet_b2", "efficientnet_b4",
                              "efficientnet_b6", "resnet18", "resnet34", "resnet50", "resnet101"}
    # the paper's tables (README "Config groups"); more may be declared, each by one experiment file
    assert {d.experiment for d in table_specs()} == set(EXPERIMENTS)
    assert {"ablation", "lqd", "loss", "freeze", "backbone", "complexity", "baselines", "cifar10"} <= set(EXPERIMENTS)


def _variants(cfg):
    """The switches of a model option that change its structure: UniAD's decoder x NMA x FJ (and Dinomaly's
    linear attention and noisy bottleneck), Dinomaly's attention, mask, noise and groups, a baseline's FJ."""
    if cfg.model._target_ == "models.uniad.UniAD":
        plain = {"attention": "softmax", "bottleneck_dropout": 0.0}
        return [{"decoder": d, "nma": n, "fj": f, **plain}
                for d, n, f in itertools.product(DECODERS, [False, True], [False, True])] + [
            {"nma": False, "fj": True, "attention": "linear", "bottleneck_dropout": 0.0},
            {"nma": True, "fj": False, "attention": "softmax", "bottleneck_dropout": 0.2}]
    if cfg.model.input == "tokens":
        plain = {"num_heads": 4, "attention": "linear", "neighbor_size": 0, "fj": False, "bottleneck_dropout": 0.2,
                 "groups": [[0, 1, 2, 3], [4, 5, 6, 7]]}
        return [{**plain, **s} for s in ({}, {"attention": "softmax", "neighbor_size": 3},
                                         {"fj": True, "bottleneck_dropout": 0.0}, {"groups": [[i] for i in range(8)]})]
    return [{"fj": f} for f in (False, True)] if "fj" in cfg.model else [{}]


@pytest.mark.parametrize("model", [m for m in MODELS if compose_cfg([f"model={m}"]).model.input != "frozen_features"])
@pytest.mark.parametrize("loss", LOSSES)
def test_every_trained_model_variant_trains_one_step(model, loss):
    """Every option of conf/model that trains (the one-pass ones: tests/test_reference_methods.py)."""
    cfg = compose_cfg(["profile=smoke", f"model={model}", f"loss={loss}"])
    if cfg.model.input == "image":
        _one_step(build_detector(cfg))
        return
    for switches in _variants(cfg):
        with open_dict(cfg):
            for key, value in switches.items():
                cfg.model[key] = value
        if cfg.model.input == "tokens":  # Dinomaly: the model option is the detector, sized by the backbone
            _one_step(instantiate_node(cfg.model, backbone=_TinyBackbone(), loss=instantiate_node(cfg.loss)))
            continue
        recon = instantiate_node(cfg.model, in_channels=8, feature_size=(4, 4))
        if "nma" in switches:
            assert (recon.attn_mask is not None) == switches["nma"] and (recon.jitter is not None) == switches["fj"]
        _one_step(FeatureDetector(_TinyBackbone(), recon, instantiate_node(cfg.loss)))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_every_backbone_builds_offline(backbone):
    weights = [] if backbone == "efficientnet_lite0" else ["backbone.weights=none"]
    cfg = compose_cfg(["profile=smoke", f"backbone={backbone}", *weights])
    feats = instantiate_node(cfg.backbone, name=cfg.backbone.name)(torch.zeros(1, 3, 64, 64))
    assert feats.shape[-2:] == (4, 4)


def test_trainable_backbone_is_in_train_mode_and_learnable():
    cfg = compose_cfg(["profile=smoke", "backbone.frozen=false"])
    detector = build_detector(cfg).train()
    assert detector.backbone.training and not detector.frozen_target
    assert any(p.requires_grad for p in detector.backbone.parameters())
    frozen = build_detector(compose_cfg(["profile=smoke"])).train()
    assert not frozen.backbone.training and not any(p.requires_grad for p in frozen.backbone.parameters())


def test_cifar_stages_give_720_channels_for_efficientnet_b4():
    cfg = compose_cfg(["data=cifar10", "backbone=efficientnet_b4", "backbone.weights=none"])
    assert instantiate_node(cfg.backbone, name=cfg.backbone.name).out_channels == 720
    cfg = compose_cfg(["backbone=efficientnet_b4", "backbone.weights=none"])
    assert instantiate_node(cfg.backbone, name=cfg.backbone.name).out_channels == 272


def test_lite0_weights_come_from_the_package():
    import timm

    cfg = compose_cfg(["profile=smoke"])
    backbone = instantiate_node(cfg.backbone, name=cfg.backbone.name)
    random = timm.create_model("tf_efficientnet_lite0", features_only=True, out_indices=(0, 1, 2, 3))
    w = backbone.net.conv_stem.weight
    assert not torch.allclose(w, random.conv_stem.weight)
    assert backbone.out_channels == 16 + 24 + 40 + 112


def test_imagenet_weights_without_network_name_the_alternatives(monkeypatch):
    import timm

    from models.backbone import BackboneWeightsError

    real = timm.create_model

    def offline(name, pretrained=False, **kw):
        if pretrained:
            raise OSError("no network")
        return real(name, pretrained=False, **kw)

    monkeypatch.setattr(timm, "create_model", offline)
    cfg = compose_cfg(["profile=smoke", "backbone=resnet18"])
    with pytest.raises(Exception, match=r"backbone.weights=none or backbone.weights=PATH") as info:
        instantiate_node(cfg.backbone, name=cfg.backbone.name)
    assert isinstance(info.value.__cause__ or info.value, BackboneWeightsError)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_composes_and_names_itself(experiment):
    cfg = compose_cfg([f"+experiment={experiment}", "profile=smoke"])
    assert cfg.experiment == experiment


@pytest.mark.parametrize("decl", table_specs(), ids=lambda d: d.experiment)
def test_every_row_of_every_table_composes_to_its_key(decl):
    """Each declared row's overrides compose, and the resolved config carries the values that the report
    matches the row on (so a run lands in the row the sweep ran it for)."""
    from omegaconf import open_dict

    from bench.groups import job_choices
    from reports.collect import record_row

    seeds = [f"seed={decl.seeds[0]}"] if decl.seeds else []
    if decl.seeds:
        assert decl.n_seeds == len(decl.seeds), f"{decl.path.name}: n_seeds disagrees with the seed list"
    for row in decl.rows:
        if row.paper_only:
            continue
        cfg = compose_cfg([f"+experiment={decl.experiment}", "profile=smoke", *row.overrides, *seeds], hydra=True)
        choices = job_choices(cfg.hydra.runtime.choices)  # what the job records
        with open_dict(cfg):
            del cfg["hydra"]
        record = {"status": "completed", "task": "fit", "seed": 1, "overrides": list(row.overrides), "schema": 2,
                  "choices": choices, "config": OmegaConf.to_container(cfg, resolve=True)}
        run = record_row(record, "run")
        assert decl.key_of(run) == row.key, row.id


@pytest.mark.parametrize("group", ["data", "logger", "model", "loss", "backbone"])
def test_every_option_names_an_importable_target(group):
    from hydra.utils import get_object

    for path in sorted(Path(CONF, group).glob("*.yaml")):
        node = OmegaConf.load(path)
        assert "_target_" in node, f"conf/{group}/{path.name} has no _target_"
        assert callable(get_object(node._target_)), path.name


def test_a_dataset_built_from_its_node_satisfies_the_protocol(tmp_paths):
    from bench.build import build_datasets
    from data.protocol import AnomalyDataset

    train, test = build_datasets(compose_cfg(["profile=smoke"]).data)
    for split in (train, test):
        assert isinstance(split, AnomalyDataset)
        assert len(split.samples) == len(split) and set(split.files()) >= {s.path for s in split.samples}
    assert test.has_masks and {s.category for s in test.samples} == set(test.categories)
