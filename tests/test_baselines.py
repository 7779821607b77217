"""C.1 reconstruction baselines (MLP, CNN), Metaformer autoencoder A (Table 1), C.3 visualisation decoder."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.cnn import BasicBlock, CNNReconstruction
from models.metaformer_ae import MetaformerAE, anomaly_map
from models.mlp import MLPReconstruction
from models.vis_decoder import VisDecoder

C_IN, HW, HID = 24, (7, 7), 32


def tiny_mlp(**kw):
    return MLPReconstruction(C_IN, HW, hidden_dim=HID, num_encoder_layers=2, num_decoder_layers=2,
                             dim_feedforward=64, **kw)


def tiny_cnn(**kw):
    return CNNReconstruction(C_IN, HW, hidden_dim=HID, **kw)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threading on the 2 shared cores only adds contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- shapes
@pytest.mark.parametrize("make", [tiny_mlp, tiny_cnn])
def test_feature_models_shape(make):
    model = make()
    x = torch.randn(2, C_IN, *HW)
    out = model(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_mlp_rejects_other_feature_size():
    with pytest.raises(ValueError):
        tiny_mlp()(torch.randn(1, C_IN, 5, 5))


def test_metaformer_shape_and_anomaly_map():
    model = MetaformerAE()
    img = torch.randn(2, 3, 64, 64)
    rec = model(img)
    assert rec.shape == img.shape
    amap = MetaformerAE.anomaly_map(img, rec)
    assert amap.shape == (2, 1, 64, 64)
    assert (amap >= 0).all()
    expected = (img - rec).pow(2).sum(1, keepdim=True).sqrt()
    torch.testing.assert_close(amap, expected)
    assert torch.count_nonzero(anomaly_map(img, img)) == 0
    with pytest.raises(ValueError):
        model(torch.randn(1, 3, 48, 48))


def test_vis_decoder_shape():
    dec = VisDecoder(C_IN)
    with torch.no_grad():
        out = dec(torch.randn(1, C_IN, *HW))
    assert out.shape == (1, 3, 112, 112)
    # the number of x2 up-samplings follows the stride
    for stride, size in ((8, 4), (32, 2), (14, 3)):  # 14: a ViT's patches, up-sampled x16 then resized
        small = VisDecoder(C_IN, feature_stride=stride, base_channels=8)
        assert small(torch.randn(1, C_IN, size, size)).shape == (1, 3, size * stride, size * stride)
    for stride in (3, 33):
        with pytest.raises(ValueError, match=f"feature_stride must be in \\[4, 32\\], got {stride}"):
            VisDecoder(C_IN, feature_stride=stride)


def test_vis_decoder_is_reversed_resnet34():
    dec = VisDecoder(272)
    stages = [dec.layer1, dec.layer2, dec.layer3, dec.layer4]
    assert [len(s) for s in stages] == [3, 6, 4, 3]
    assert [s[-1].conv2.out_channels for s in stages] == [512, 256, 128, 64]
    assert dec.input_proj[0].in_channels == 272 and dec.input_proj[0].out_channels == 512
    ups = [m for m in dec.modules() if isinstance(m, nn.ConvTranspose2d) and m.stride == (2, 2)]
    # up-sampling only by transposed convolutions: 2 stages x (main + shortcut) + 2 in the reversed stem
    assert len(ups) == 6
    assert not any(isinstance(m, (nn.Upsample, nn.MaxPool2d)) for m in dec.modules())
    assert dec.head.out_channels == 3


# ---------------------------------------------------------------- CNN structure (C.1)
def test_cnn_channel_progression_strides_and_no_stem():
    model = CNNReconstruction(C_IN, HW, hidden_dim=256)
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    assert [len(s) for s in stages] == [3, 4, 6, 3]  # ResNet-34
    assert all(isinstance(b, BasicBlock) for s in stages for b in s)
    assert [s[-1].conv2.out_channels for s in stages] == [256, 128, 128, 256]
    assert [s[0].conv1.in_channels for s in stages] == [256, 256, 128, 128]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(m.stride == (1, 1) for m in convs)
    assert not any(m.kernel_size == (7, 7) for m in convs)
    assert all(m.kernel_size in ((1, 1), (3, 3)) and m.dilation == (1, 1) for m in convs)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in model.modules())
    assert model.channel_reduction.kernel_size == (1, 1) and model.channel_reduction.out_channels == 256
    assert model.channel_recovery.kernel_size == (1, 1) and model.channel_recovery.out_channels == C_IN
    # projection shortcuts exactly where the width changes (stage-2 and stage-4 entries)
    projections = [b for s in stages for b in s if not isinstance(b.shortcut, nn.Identity)]
    assert projections == [model.layer2[0], model.layer4[0]]


# ---------------------------------------------------------------- MLP structure (C.1)
def test_mlp_has_no_attention_and_no_position_embedding():
    model = tiny_mlp()
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    names = [n for n, _ in model.named_parameters()]
    assert not any("pos" in n for n in names)
    # the only non-Linear/LayerNorm parameters are the decoder's learned query embedding
    embeddings = [m for m in model.modules() if isinstance(m, nn.Embedding)]
    assert len(embeddings) == 1 and embeddings[0].num_embeddings == HW[0] * HW[1]
    allowed = (nn.Linear, nn.LayerNorm, nn.Embedding)
    assert all(isinstance(m, allowed) for m in model.modules() if list(m.parameters(recurse=False)))
    # cross-"attention" = concatenation of [x, memory] along channels + Linear(2h→h)
    assert model.decoder[0].cross[0].in_features == 2 * HID


def test_mlp_is_token_wise():
    """No spatial mixing: changing one location's input only changes that location's output."""
    model = tiny_mlp().eval()
    x = torch.randn(1, C_IN, *HW)
    y = x.clone()
    y[..., 3, 4] += 1.0
    diff = (model(x) - model(y)).abs().sum(1)[0]
    assert diff[3, 4] > 0
    diff[3, 4] = 0
    assert diff.max() == 0


def test_initialisation_xavier_zero_bias():
    for model in (tiny_mlp(), tiny_cnn(), MetaformerAE(), VisDecoder(C_IN, base_channels=16)):
        layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d))]
        assert layers
        for m in layers:
            if m.bias is not None:
                assert torch.count_nonzero(m.bias) == 0
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(m.weight)
            bound = (6.0 / (fan_in + fan_out)) ** 0.5
            assert m.weight.abs().max() <= bound + 1e-6


# ---------------------------------------------------------------- feature jittering
@pytest.mark.parametrize("make", [tiny_mlp, tiny_cnn])
def test_feature_jitter_only_in_training_and_before_reduction(make):
    model = make(fj=True, fj_scale=20.0, fj_prob=1.0)
    if isinstance(model, MLPReconstruction):
        model.apply(lambda m: setattr(m, "p", 0.0) if isinstance(m, nn.Dropout) else None)
    seen = []
    model.channel_reduction.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().clone()))
    x = torch.randn(2, C_IN, *HW)
    model.eval()
    with torch.no_grad():
        a, b = model(x), model(x)
    torch.testing.assert_close(a, b)
    clean = seen[-1]
    model.train()
    with torch.no_grad():
        c, d = model(x), model(x)
    assert not torch.allclose(c, d)
    noisy = seen[-1]
    assert noisy.shape == clean.shape and not torch.allclose(noisy, clean)
    # noise std per token ~ scale * ||f|| / C (C channels, not sqrt(C))
    tok = clean if clean.dim() == 3 else clean.permute(0, 2, 3, 1)
    ntok = noisy if noisy.dim() == 3 else noisy.permute(0, 2, 3, 1)
    ratio = ((ntok - tok).std() / (tok.norm(dim=-1).mean() * 20.0 / C_IN)).item()
    assert 0.8 < ratio < 1.2
    assert make(fj=False).jitter is None


# ---------------------------------------------------------------- Metaformer Table 1
TABLE1 = [  # (layer, H=W, channels) at a 256x256x3 input
    ("Conv1", 256, 32), ("MaxPool", 128, 32), ("Conv2", 128, 64), ("MaxPool", 64, 64),
    ("Conv3", 64, 128), ("MaxPool", 32, 128), ("Conv4", 32, 256), ("MaxPool", 16, 256),
    ("Conv5", 16, 512), ("MaxPool", 8, 512), ("AvgPool", 2, 512), ("Upsample", 16, 512),
    ("T.Conv1", 16, 256), ("Upsample", 32, 256), ("T.Conv2", 32, 128), ("Upsample", 64, 128),
    ("T.Conv3", 64, 64), ("Upsample", 128, 64), ("T.Conv4", 128, 32), ("Upsample", 256, 32),
    ("T.Conv5", 256, 3),
]


def test_metaformer_sizes_match_table1():
    model = MetaformerAE().eval()
    kinds = {nn.Conv2d: "Conv", nn.MaxPool2d: "MaxPool", nn.AdaptiveAvgPool2d: "AvgPool",
             nn.ConvTranspose2d: "T.Conv", nn.Upsample: "Upsample", type(model.upsample): "Upsample"}
    recorded = []
    counters = {}

    def hook(module, inp, out):
        kind = kinds[type(module)]
        if kind in ("Conv", "T.Conv"):
            counters[kind] = counters.get(kind, 0) + 1
            kind = f"{kind}{counters[kind]}"
        assert out.shape[-1] == out.shape[-2]
        recorded.append((kind, out.shape[-1], out.shape[1]))

    for m in model.modules():
        if type(m) in kinds:
            m.register_forward_hook(hook)
    with torch.no_grad():
        out = model(torch.randn(1, 3, 256, 256))
    assert recorded == TABLE1
    assert out.shape == (1, 3, 256, 256)
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert all(m.kernel_size == (5, 5) for m in convs)
    # BN + LeakyReLU after every conv but the output T.Conv5
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 9
    assert all(m.negative_slope == 0.2 for m in model.modules() if isinstance(m, nn.LeakyReLU))
    assert isinstance(model.decoder[-1][-1], nn.ConvTranspose2d)


# ---------------------------------------------------------------- optimisation
def _loss_decreases(model, x, target, steps=5, lr=1e-3):
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps + 1):
        loss = F.mse_loss(model(x), target)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    return losses


@pytest.mark.parametrize("name", ["mlp", "cnn", "metaformer", "vis"])
def test_training_reduces_loss(name):
    if name == "mlp":
        model, x = tiny_mlp(dropout=0.0), torch.randn(2, C_IN, *HW)
        target = x
    elif name == "cnn":
        model, x = tiny_cnn(), torch.randn(2, C_IN, *HW)
        target = x
    elif name == "metaformer":
        model, x = MetaformerAE(), torch.randn(2, 3, 64, 64)
        target = x
    else:
        model, x = VisDecoder(C_IN, base_channels=16), torch.randn(2, C_IN, 2, 2)
        target = torch.randn(2, 3, 32, 32)
    losses = _loss_decreases(model, x, target)
    assert losses[-1] < losses[0]
    assert all(torch.isfinite(torch.tensor(losses)))
