"""ViT backbones (models/vit_backbone.py): the nine options, their features, weights, cache key and FLOPs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import timm
import torch

from bench.build import build_detector, instantiate_node
from bench.errors import BenchError
from models.backbone import BackboneWeightsError
from models.vit_backbone import ViTFeatureExtractor
from tests.conftest import CONF, compose_cfg

VITS = sorted(p.stem for p in Path(CONF, "backbone").glob("dinov*.yaml"))
# name: (embed dim, blocks, patch size, prefix tokens)
SHAPES = {"dinov2_vits14": (384, 12, 14, 1), "dinov2_vitb14": (768, 12, 14, 1), "dinov2_vitl14": (1024, 24, 14, 1),
          "dinov2_reg_vits14": (384, 12, 14, 5), "dinov2_reg_vitb14": (768, 12, 14, 5),
          "dinov2_reg_vitl14": (1024, 24, 14, 5), "dinov3_vits16": (384, 12, 16, 5),
          "dinov3_vitb16": (768, 12, 16, 5), "dinov3_vitl16": (1024, 24, 16, 5)}


def _backbone(name: str, *overrides: str) -> ViTFeatureExtractor:
    cfg = compose_cfg(["profile=smoke", f"backbone={name}", "backbone.weights=none", *overrides])
    return instantiate_node(cfg.backbone, name=cfg.backbone.name)


def test_the_nine_options_exist():
    assert VITS == sorted(SHAPES)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_each_option_is_cut_after_its_last_block_and_gives_its_shapes(name):
    """Built on the meta device (no memory, no init cost for ViT-L): sizes and shapes only."""
    dim, depth, patch, prefix = SHAPES[name]
    with torch.device("meta"):
        backbone = _backbone(name)
        maps = backbone(torch.empty(2, 3, 8 * patch, 6 * patch))
        tokens = backbone.forward_tokens(torch.empty(2, 3, 8 * patch, 6 * patch))
    layers = list(range(2, 10)) if depth == 12 else list(range(4, 19, 2))  # Dinomaly's target blocks
    assert backbone.layers == layers and len(backbone.net.blocks) == layers[-1] + 1 and backbone.depth == depth
    assert isinstance(backbone.net.norm, torch.nn.Identity)  # raw block outputs: the final norm is gone
    assert (backbone.embed_dim, backbone.feature_stride, backbone.num_prefix_tokens) == (dim, patch, prefix)
    assert backbone.out_channels == 8 * dim and backbone.channels == [dim] * 8 and backbone.stages == layers
    assert maps.shape == (2, 8 * dim, 8, 6)
    assert tokens.shape == (2, 8, prefix + 48, dim)


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov2_reg_vits14", "dinov3_vits16"])
def test_small_vits_run_at_the_smoke_size(name):
    """64 px is no multiple of 14: resized down to 56 px, the 4x4 grid ``feature_size`` expects (64 // 14)."""
    backbone = _backbone(name)
    images = torch.randn(2, 3, 64, 64)
    maps, tokens = backbone(images), backbone.forward_tokens(images)
    prefix, dim = backbone.num_prefix_tokens, backbone.embed_dim
    assert maps.shape == (2, 8 * dim, 4, 4) and tokens.shape == (2, 8, prefix + 16, dim)
    # the maps are the patch tokens of forward_tokens, block after block along channels
    patches = tokens[:, :, prefix:].permute(0, 1, 3, 2).reshape(2, 8 * dim, 4, 4)
    torch.testing.assert_close(maps, patches)
    assert not maps.requires_grad  # frozen
    assert not backbone.train().training


def _dinov2_tokens(model, images, layers):
    """Every token of blocks ``layers`` of a full timm DINOv2, as Dinomaly's ViTill runs its encoder:
    prepare the tokens (patch embedding, position, class and register tokens), then the raw blocks."""
    x = model.norm_pre(model._pos_embed(model.patch_embed(images)))
    out = []
    for i, block in enumerate(model.blocks):
        x = block(x)
        if i in layers:
            out.append(x)
    return torch.stack(out, dim=1)


def test_features_are_the_raw_outputs_of_the_chosen_blocks_of_the_full_network(tmp_path):
    torch.manual_seed(0)
    full = timm.create_model("vit_small_patch14_reg4_dinov2", num_classes=0, dynamic_img_size=True).eval()
    path = tmp_path / "weights.pth"
    torch.save(full.state_dict(), path)
    backbone = _backbone("dinov2_reg_vits14", f"backbone.weights={path}", "backbone.layers=[1,4,7]")
    images = torch.randn(2, 3, 56, 70)
    with torch.no_grad():
        expected = _dinov2_tokens(full, images, [1, 4, 7])
        torch.testing.assert_close(backbone.forward_tokens(images), expected)
        normed = full.norm(expected)
    assert not torch.allclose(expected, normed)  # the final norm would change them: it is not applied
    assert backbone(images).shape == (2, 3 * 384, 4, 5)


def test_original_dinov2_names_load_through_timms_filter(tmp_path):
    """A checkpoint of the official DINOv2 release (``register_tokens``, ``mask_token``, the class token
    without its position) gives the same features as timm's own names."""
    torch.manual_seed(0)
    full = timm.create_model("vit_small_patch14_reg4_dinov2", num_classes=0, dynamic_img_size=True)
    state = dict(full.state_dict())
    p0 = torch.randn(1, 1, 384)
    original = {k: v for k, v in state.items() if k not in ("reg_token", "cls_token", "pos_embed")}
    original.update(register_tokens=state["reg_token"], cls_token=state["cls_token"] - p0,
                    pos_embed=torch.cat([p0, state["pos_embed"]], dim=1), mask_token=torch.zeros(1, 384))
    torch.save(state, tmp_path / "timm.pth")
    torch.save(original, tmp_path / "original.pth")
    images = torch.randn(1, 3, 56, 56)
    a = _backbone("dinov2_reg_vits14", f"backbone.weights={tmp_path / 'timm.pth'}")(images)
    b = _backbone("dinov2_reg_vits14", f"backbone.weights={tmp_path / 'original.pth'}")(images)
    torch.testing.assert_close(a, b)


def test_a_safetensors_file_loads_and_a_foreign_one_is_named(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    full = timm.create_model("vit_small_patch16_dinov3", num_classes=0, dynamic_img_size=True).eval()
    save_file(full.state_dict(), str(tmp_path / "model.safetensors"))
    backbone = _backbone("dinov3_vits16", f"backbone.weights={tmp_path / 'model.safetensors'}")
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = full.forward_intermediates(images, indices=backbone.layers, norm=False, intermediates_only=True)
    torch.testing.assert_close(backbone(images), torch.cat(expected, dim=1))
    torch.save({"conv.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(Exception, match=r"backbone.weights=.*other.pth lacks") as info:
        _backbone("dinov3_vits16", f"backbone.weights={tmp_path / 'other.pth'}")
    assert isinstance(info.value.__cause__ or info.value, BackboneWeightsError)


def test_random_weights_are_drawn_by_the_seed():
    torch.manual_seed(3)
    a = _backbone("dinov2_vits14").net.blocks[0].attn.qkv.weight
    torch.manual_seed(3)
    b = _backbone("dinov2_vits14").net.blocks[0].attn.qkv.weight
    torch.manual_seed(4)
    c = _backbone("dinov2_vits14").net.blocks[0].attn.qkv.weight
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(("overrides", "match"), [
    (["backbone.layers=[3,2]"], r"backbone.layers=\[3, 2\]: give ascending block indices in \[0, 11\]"),
    (["backbone.layers=[12]"], r"backbone.layers=\[12\]"),
    (["backbone.feature_stride=16"], r"backbone.feature_stride=16 but dinov2_vits14 has 14-pixel patches"),
])
def test_bad_layers_or_stride_are_named(overrides, match):
    with torch.device("meta"), pytest.raises(Exception, match=match):
        _backbone("dinov2_vits14", *overrides)


def test_the_feature_cache_key_covers_the_blocks_and_the_network():
    from bench.feature_cache import cache_key, key_parts

    def key(*overrides):
        cfg = compose_cfg(["profile=smoke", "backbone=dinov2_vits14", "backbone.weights=none", *overrides])
        return cache_key(key_parts(cfg.data, cfg.backbone, seed=1, index_dir=None))

    assert key() == key()
    assert key("backbone.layers=[2,3]") != key("backbone.layers=[2,4]")
    # same blocks and sizes, with and without register tokens: other networks, other features
    assert key() != key("backbone.timm_name=vit_small_patch14_reg4_dinov2.lvd142m")


def _vit_flops(grid: int, patch: int, dim: int, prefix: int, blocks: int) -> int:
    """2 FLOPs per MAC: patch embedding, then per block q/k/v + output projections and the 4x MLP
    (24 N C^2) and attention's two products (4 N^2 C), N tokens."""
    n = grid * grid + prefix
    return 2 * grid * grid * 3 * patch * patch * dim + blocks * (24 * n * dim * dim + 4 * n * n * dim)


@pytest.mark.parametrize("name", ["dinov2_vits14", "dinov2_reg_vitb14", "dinov3_vitl16"])
def test_complexity_counts_the_blocks_that_run(name):
    from bench.complexity import count_flops, count_parameters

    dim, depth, patch, prefix = SHAPES[name]
    with torch.device("meta"):
        backbone = _backbone(name)
    grid = 224 // patch
    run = backbone.layers[-1] + 1
    assert count_flops(backbone, 224) == _vit_flops(grid, patch, dim, prefix, run)
    full = timm.create_model(backbone.net.default_cfg["architecture"], num_classes=0, device="meta")
    assert count_parameters(backbone, learnable_only=False) < count_parameters(full, learnable_only=False)


def test_uniad_and_patchcore_take_the_vit_channels():
    uniad = build_detector(compose_cfg(["profile=smoke", "backbone=dinov3_vits16", "backbone.weights=none"]))
    assert uniad.reconstruction.channel_reduction.in_features == 8 * 384
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert uniad(images).shape == (2, 1, 64, 64)
    patchcore = build_detector(compose_cfg(["profile=smoke", "backbone=dinov3_vits16", "backbone.weights=none",
                                            "model=patchcore"]))  # model.layers [3, 4]: blocks 3 and 4
    assert patchcore.method.dim == 2 * 384


def _offline(monkeypatch, cache: Path) -> None:
    import huggingface_hub.constants as hf

    def unreachable(*args, **kwargs):
        raise socket.gaierror("no network in this test")

    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(socket, "getaddrinfo", unreachable)


def test_pretrained_weights_offline_stop_the_job_before_the_data_checks(tmp_paths, monkeypatch):
    import bench.job
    from bench.job import run

    _offline(monkeypatch, tmp_paths / "hf")

    def no_data(*args, **kwargs):
        raise AssertionError("the data were read before the weights were checked")

    monkeypatch.setattr(bench.job, "build_datasets", no_data)
    with pytest.raises(BenchError, match=r"^backbone=dinov2_vits14: pretrained weights are not in the Hugging Face "
                                         r"cache .* download model.safetensors of https://huggingface.co/timm/"
                                         r"vit_small_patch14_dinov2.lvd142m and set backbone.weights=PATH, "
                                         r"or fill the cache \(HF_HOME\)"):
        run(compose_cfg(["profile=smoke", "backbone=dinov2_vits14"]), tmp_paths / "run")


def test_pretrained_weights_come_from_a_filled_hub_cache(tmp_path, monkeypatch):
    """A cluster's HF_HOME cache filled beforehand: read without network."""
    from safetensors.torch import save_file

    _offline(monkeypatch, tmp_path / "hf")
    torch.manual_seed(0)
    full = timm.create_model("vit_small_patch14_dinov2", num_classes=0, dynamic_img_size=True)
    repo = tmp_path / "hf" / "models--timm--vit_small_patch14_dinov2.lvd142m"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    (repo / "snapshots" / ("0" * 40)).mkdir(parents=True)
    save_file(full.state_dict(), str(repo / "snapshots" / ("0" * 40) / "model.safetensors"))
    cfg = compose_cfg(["profile=smoke", "backbone=dinov2_vits14"])
    backbone = instantiate_node(cfg.backbone, name=cfg.backbone.name)
    torch.testing.assert_close(backbone.net.blocks[0].attn.qkv.weight, full.blocks[0].attn.qkv.weight)


@pytest.mark.slow  # two smoke jobs end to end
@pytest.mark.parametrize("model", ["uniad", "patchcore"])
def test_a_smoke_job_runs_on_a_vit(tmp_paths, model):
    from bench.job import run

    record = run(compose_cfg(["profile=smoke", "backbone=dinov2_vits14", "backbone.weights=none",
                              f"model={model}"]), tmp_paths / "run")
    assert record["status"] == "completed" and record["cache"]["used"]
    assert 0 <= record["metrics"]["mean"]["pixel_auroc"] <= 1
    assert record["complexity"]["backbone_params"] > 0
