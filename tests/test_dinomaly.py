"""Dinomaly's toggles, detector, recipe pieces and an end-to-end smoke job; UniAD's cross-family options."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from bench.job import run
from models.dinomaly import DinomalyDecoder
from models.dinomaly_blocks import neighbour_blocked
from models.dinomaly_detector import DinomalyDetector, gaussian_kernel2d, top_ratio_scores
from models.hard_mining import HardMiningCosineLoss
from models.uniad import UniAD
from tests.conftest import compose_cfg

GROUPS = [[0, 1, 2, 3], [4, 5, 6, 7]]


def _decoder(attention="linear", neighbor=0, dropout=0.2, groups=GROUPS, **kw) -> DinomalyDecoder:
    torch.manual_seed(0)
    return DinomalyDecoder(32, 4, 8, 4.0, attention, neighbor, dropout, groups, 5, **kw)


def _tokens(layers=8, side=4, prefix=5, dim=32) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(2, prefix + side * side, dim, generator=gen) for _ in range(layers)]


def _same_weights(a: nn.Module, b: nn.Module) -> None:
    b.load_state_dict(a.state_dict())


def test_linear_and_softmax_attention_give_different_reconstructions():
    linear, softmax = _decoder("linear").eval(), _decoder("softmax").eval()
    _same_weights(linear, softmax)
    tokens = _tokens()
    with torch.no_grad():
        (en_l, de_l), (en_s, de_s) = linear.forward_tokens(tokens), softmax.forward_tokens(tokens)
    torch.testing.assert_close(en_l[0], en_s[0])  # the target does not depend on the decoder
    assert not torch.allclose(de_l[0], de_s[0], atol=1e-4)


def test_the_neighbour_mask_blocks_patch_windows_only_and_changes_the_output():
    blocked = neighbour_blocked(side=4, size=3, prefix=5)
    assert not blocked[:5].any() and not blocked[:, :5].any()  # prefix tokens never masked
    # token (1, 1) (index 5 + 5) blocks its 3x3 window: rows 0-2, columns 0-2
    window = {5 + r * 4 + c for r in range(3) for c in range(3)}
    assert set(blocked[5 + 5].nonzero().flatten().tolist()) == window
    plain, masked = _decoder("softmax").eval(), _decoder("softmax", 3).eval()
    _same_weights(plain, masked)
    with torch.no_grad():
        assert not torch.allclose(plain.forward_tokens(_tokens())[1][0], masked.forward_tokens(_tokens())[1][0])
    with pytest.raises(ValueError, match="needs model.attention=softmax"):
        _decoder("linear", 3)


def test_bottleneck_dropout_is_the_only_training_noise():
    tokens = _tokens()
    quiet = _decoder(dropout=0.0)
    with torch.no_grad():
        train = quiet.train().forward_tokens(tokens)[1][0]
        evaluation = quiet.eval().forward_tokens(tokens)[1][0]
    torch.testing.assert_close(train, evaluation)  # dropout 0: the bottleneck is a plain MLP
    noisy = _decoder(dropout=0.2)
    with torch.no_grad():
        assert not torch.allclose(noisy.train().forward_tokens(tokens)[1][0], noisy.eval().forward_tokens(tokens)[1][0])


def test_feature_jittering_perturbs_the_decoder_input_in_training_only():
    tokens = _tokens()
    jittered = _decoder(dropout=0.0, fj=True)
    with torch.no_grad():
        assert not torch.allclose(jittered.train().forward_tokens(tokens)[1][0],
                                  jittered.eval().forward_tokens(tokens)[1][0])


def test_layer_to_layer_groups_pair_each_target_layer_with_a_reversed_block():
    decoder = _decoder(groups=[[i] for i in range(8)]).eval()
    tokens = _tokens()
    en, de = decoder.forward_tokens(tokens)
    assert len(en) == len(de) == 8
    for k in range(8):  # encoder group k is target layer k, prefix dropped, as a (B, C, h, w) map
        torch.testing.assert_close(en[k], tokens[k][:, 5:].transpose(1, 2).reshape(2, 32, 4, 4))
    with torch.no_grad():  # decoder group 0 is the last block's output
        x = decoder.bottleneck(torch.stack(tokens, 1).mean(1))
        for block in decoder.blocks:
            x = block(x)
    torch.testing.assert_close(de[0], x[:, 5:].transpose(1, 2).reshape(2, 32, 4, 4))


class _CNN(nn.Module):
    """A feature-map backbone (no ``forward_tokens``), as ``models.backbone.FeatureExtractor``."""

    out_channels, frozen = 16, True

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 4, stride=4).requires_grad_(False)

    def forward(self, images):
        return self.conv(images)


def _detector(**overrides) -> DinomalyDetector:
    kw = dict(num_heads=4, num_blocks=4, mlp_ratio=2.0, attention="linear", neighbor_size=0,
              bottleneck_dropout=0.2, groups=[[0, 1], [2, 3]], fj=False, fj_scale=20.0, fj_prob=1.0,
              blur_size=5, blur_sigma=4.0, top_ratio=0.01)
    torch.manual_seed(0)
    return DinomalyDetector(_CNN(), HardMiningCosineLoss(), **{**kw, **overrides})


def test_a_cnn_map_is_one_target_layer_for_every_encoder_group():
    detector = _detector().eval()
    images = torch.randn(2, 3, 32, 32)
    target = detector.target(images)
    assert target.shape == (2, 3, 64, 16)  # decoder input + 2 encoder groups, 8x8 tokens, 16 channels
    feature_map = detector.backbone(images)
    en = detector.reconstruction.encoded(target)
    for g in range(2):
        torch.testing.assert_close(en[:, g], feature_map)
    rec = detector.reconstruct(target)
    amap = detector.anomaly_map(target, rec, (32, 32))
    assert rec.shape == (2, 2, 16, 8, 8) and amap.shape == (2, 1, 32, 32)
    assert detector.image_scores(target, rec, amap).shape == (2,)
    assert detector.target_key["groups"] == [[0, 1], [2, 3]]


def test_the_hard_mining_ramp_follows_the_training_iteration():
    detector = _detector()
    loss = detector.criterion
    for iteration, p in ((0, 0.0), (500, 0.45), (1000, 0.9), (5000, 0.9)):
        detector.set_iteration(iteration)
        assert loss.p == pytest.approx(p)


def test_evaluation_blur_and_top_ratio_score():
    kernel = gaussian_kernel2d(5, 4.0)
    assert kernel.sum().item() == pytest.approx(1.0)
    x = torch.arange(5.0) - 2
    expected = torch.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / 32)
    torch.testing.assert_close(kernel[0, 0], expected / expected.sum())
    amap = torch.zeros(1, 1, 10, 10)
    amap[0, 0, 0, 0] = 5.0  # top 1% of 100 values is the single largest
    assert top_ratio_scores(amap, 0.01).item() == 5.0
    assert top_ratio_scores(amap, 0.02).item() == 2.5


def test_resize_then_centre_crop_equals_torchvision_resize_and_center_crop():
    from torchvision import transforms

    from data.transforms import IMAGENET_MEAN, IMAGENET_STD, center_crop, to_input

    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (300, 260, 3), dtype=np.uint8))
    official = transforms.Compose([transforms.Resize((448, 448)), transforms.ToTensor(), transforms.CenterCrop(392),
                                   transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    torch.testing.assert_close(center_crop(to_input(image, 448), 392), official(image))


def test_uniad_defaults_are_unchanged_and_the_dinomaly_options_change_it():
    torch.manual_seed(0)
    default = UniAD(32, (4, 4), hidden_dim=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                    dim_feedforward=32, neighbor_size=(3, 3)).eval()
    torch.manual_seed(0)
    noisy = UniAD(32, (4, 4), hidden_dim=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                  dim_feedforward=32, neighbor_size=(3, 3), fj=False, bottleneck_dropout=0.2).eval()
    torch.manual_seed(0)
    linear = UniAD(32, (4, 4), hidden_dim=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                   dim_feedforward=32, neighbor_size=(3, 3), nma=False, attention="linear").eval()
    assert default.state_dict().keys() == noisy.state_dict().keys() == linear.state_dict().keys()
    x = torch.randn(2, 32, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(noisy(x), default(x))  # dropout is training noise only
        assert not torch.allclose(linear(x), default(x), atol=1e-4)
        noisy.train()
        assert not torch.allclose(noisy(x), default(x), atol=1e-4)
    with pytest.raises(ValueError, match="set model.nma=false"):
        UniAD(32, (4, 4), hidden_dim=16, nhead=2, attention="linear")


SMOKE = ["model=dinomaly", "profile=smoke", "data.generator.n_train=4", "model.num_heads=4"]


def test_dinomaly_smoke_job_completes(tmp_paths):
    record = run(compose_cfg([*SMOKE, "loss=dinomaly_hm"]), tmp_paths / "run")
    assert record["status"] == "completed"
    assert all(0.0 <= v <= 1.0 for v in record["metrics"]["mean"].values())
    assert record["complexity"]["reconstruction_params"] > 0 and record["cache"]["used"]


def test_dinomaly_recipe_runs_its_iterations_on_cropped_images(tmp_paths):
    overrides = [*SMOKE, "trainer=dinomaly", "trainer.iterations=7", "trainer.warmup_iterations=2",
                 "+data.resize=80", "cache.features=false"]
    record = run(compose_cfg(overrides), tmp_paths / "run")
    assert record["status"] == "completed"
    assert record["config"]["trainer"]["optimizer"]["_target_"] == "timm.optim.AdamWLegacy"
    assert record["complexity"]["image_size"] == 64  # the network sees the crop
    state = torch.load(tmp_paths / "run" / "last.ckpt", weights_only=False)
    assert state["scheduler"]["last_epoch"] == 7  # stepped once per iteration, stopped at 7
