"""UniAD against the official implementation: outputs, parameter count, masks, jitter and maps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from models import attention
from models.attention import PositionalAttention
from models.jitter import FeatureJitter
from models.losses import MSELoss, image_scores, upsample_map
from models.neighbor_mask import additive_mask, neighbor_mask
from models.query_decoder import DESIGNS
from models.uniad import UniAD, load_official_state_dict, official_key
from tests.conftest import SHARED

REFERENCE = SHARED / "reference" / "uniad_official_reference.pt"


def test_paper_config_has_official_parameter_count():
    model = UniAD(272, (14, 14))
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 7_717_392


@pytest.mark.skipif(not REFERENCE.is_file(), reason=f"{REFERENCE} is absent (../shared not beside the checkout)")
def test_matches_official_outputs_in_eval_mode():
    ref = torch.load(REFERENCE, weights_only=True)
    model = UniAD(272, (14, 14)).eval()
    load_official_state_dict(model, ref["state_dict"])
    # every official tensor was used exactly once
    assert sorted(official_key(k) for k in model.state_dict()) == sorted(ref["state_dict"])
    with torch.no_grad():
        rec = model(ref["feature_align"])
        pred = upsample_map(MSELoss().anomaly_map(ref["feature_align"], rec), (224, 224))
    torch.testing.assert_close(rec, ref["feature_rec"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pred, ref["pred"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(image_scores(pred, "max", 16), ref["img_score_max16"], rtol=1e-5, atol=1e-5)
    assert torch.equal(additive_mask(neighbor_mask((14, 14), (7, 7))), ref["mask"])


def test_neighbor_mask_on_hand_computed_grid():
    # 4x4 grid, 3x3 window: token 0 (corner) blocks itself, its right, below and diagonal neighbours
    blocked = neighbor_mask((4, 4), (3, 3))
    expected_corner = {0, 1, 4, 5}
    assert set(torch.nonzero(blocked[0]).flatten().tolist()) == expected_corner
    # token 5 = (1, 1) is interior: rows 0-2, cols 0-2
    assert set(torch.nonzero(blocked[5]).flatten().tolist()) == {0, 1, 2, 4, 5, 6, 8, 9, 10}
    assert torch.equal(blocked, blocked.T)
    counts = blocked.sum(1)
    assert counts.min() == 4 and counts.max() == 9


def test_neighbor_mask_refuses_a_window_covering_the_grid():
    with pytest.raises(ValueError, match="neighbor_size"):
        neighbor_mask((3, 3), (7, 7))


def test_jitter_std_follows_the_formula():
    torch.manual_seed(0)
    channels = 64
    tokens = torch.randn(4000, channels) * 3
    jitter = FeatureJitter(scale=20, prob=1.0).train()
    noise = jitter(tokens) - tokens
    expected = tokens.norm(dim=-1) * 20 / channels  # C, not sqrt(C)
    measured = noise.std(dim=-1)
    assert torch.allclose((measured / expected).mean(), torch.tensor(1.0), atol=0.02)
    assert torch.equal(jitter.eval()(tokens), tokens)


def test_jitter_probability_zero_and_half():
    tokens = torch.randn(2000, 1, 8)
    assert torch.equal(FeatureJitter(20, 0.0).train()(tokens), tokens)
    torch.manual_seed(1)
    changed = (FeatureJitter(20, 0.5).train()(tokens) != tokens).any(-1).float().mean()
    assert 0.4 < changed < 0.6


@pytest.mark.parametrize("design", DESIGNS)
def test_every_decoder_design_trains(design):
    torch.manual_seed(0)
    model = UniAD(16, (4, 4), hidden_dim=16, nhead=2, num_encoder_layers=1, num_decoder_layers=2,
                  dim_feedforward=32, decoder=design, neighbor_size=(3, 3), fj=False)
    x = torch.randn(3, 16, 4, 4)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    losses = []
    for _ in range(15):
        loss = F.mse_loss(model(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_designs_are_different_functions():
    torch.manual_seed(0)
    x = torch.randn(2, 16, 4, 4)
    outs = {}
    for design in DESIGNS:
        torch.manual_seed(0)
        model = UniAD(16, (4, 4), hidden_dim=16, nhead=2, num_encoder_layers=1, num_decoder_layers=2,
                      dim_feedforward=32, decoder=design, neighbor_size=(3, 3), fj=False).eval()
        outs[design] = model(x)
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if {a, b} == {"query1", "none"}:
                continue  # same wiring, differ by the query embedding (different parameter sets)
            assert not torch.allclose(outs[a], outs[b]), (a, b)


def test_query_embeddings_per_design():
    def n_queries(design):
        m = UniAD(16, (4, 4), hidden_dim=16, nhead=2, num_decoder_layers=3, decoder=design, neighbor_size=(3, 3))
        return sum(1 for layer in m.decoder.layers if layer.learned_embed is not None)

    assert n_queries("lqd_a") == 3 and n_queries("query1") == 1 and n_queries("none") == 0


def test_nma_mask_changes_attention():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 4, 4)
    kw = dict(hidden_dim=16, nhead=2, num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32,
              neighbor_size=(3, 3), fj=False)
    torch.manual_seed(0)
    with_mask = UniAD(8, (4, 4), nma=True, **kw).eval()
    torch.manual_seed(0)
    without = UniAD(8, (4, 4), nma=False, **kw).eval()
    assert with_mask.attn_mask is not None and without.attn_mask is None
    assert not torch.allclose(with_mask(x), without(x))


# ------------------------------------------------ the fast attention / dropout paths keep the mathematics


def _attention_inputs(self_attention: bool):
    torch.manual_seed(0)
    q = torch.randn(2, 16, 32)
    kv = q if self_attention else torch.randn(2, 16, 32)
    return q, kv, torch.randn(16, 32), neighbor_mask((4, 4), (3, 3))


@pytest.mark.parametrize("self_attention", [True, False])
@pytest.mark.parametrize("training", [True, False])
def test_attention_equals_multihead_attention_with_the_same_parameters(self_attention, training):
    q, kv, pos, blocked = _attention_inputs(self_attention)
    attn = PositionalAttention(32, 4, dropout=0.0).train(training)
    ref, _ = attn.mha(q + pos, kv + pos, kv, attn_mask=additive_mask(blocked), need_weights=False)
    torch.testing.assert_close(attn(q, kv, pos, blocked), ref, rtol=1e-5, atol=1e-5)


def test_cpu_dropout_attention_path_equals_fused_attention_when_nothing_is_dropped(monkeypatch):
    q, kv, pos, blocked = _attention_inputs(False)
    attn = PositionalAttention(32, 4, dropout=0.1).eval()
    expected = attn(q, kv, pos, blocked)  # eval: F.scaled_dot_product_attention
    monkeypatch.setattr(attention, "keep_mask", lambda shape, p, like: (torch.ones(shape, dtype=like.dtype), 1.0))
    torch.testing.assert_close(attn.train()(q, kv, pos, blocked), expected, rtol=1e-5, atol=1e-5)


def test_cpu_dropout_drops_p_and_keeps_the_expectation():
    torch.manual_seed(0)
    x = torch.ones(400_000, requires_grad=True)
    y = attention.Dropout(0.1).train()(x)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - 0.1) < 0.003
    kept = torch.tensor(65536 / (65536 - 6554), dtype=torch.float32).item()  # p' = round(0.1 * 2**16) / 2**16
    assert set(y.unique().tolist()) == {0.0, kept}
    assert abs(y.mean().item() - 1) < 0.01
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # d(y)/d(x) is the same mask and scale
    assert torch.equal(attention.Dropout(0.1).eval()(x), x)


def _fixed_mask(seed: int):
    """A keep_mask stand-in: a seeded random 0/1 mask (about 30% dropped) and the scale 1/0.7."""
    generator = torch.Generator().manual_seed(seed)

    def keep_mask(shape, p, like):
        return (torch.rand(shape, generator=generator) > 0.3).to(like.dtype), 1 / 0.7

    return keep_mask


def _grads(module, *inputs):
    return [t.grad.clone() for t in inputs] + [p.grad.clone() for p in module.parameters()]


def test_cpu_residual_dropout_and_ffn_dropout_equal_the_plain_formulas(monkeypatch):
    """The fused CPU training paths (x + dropout(a) in one addcmul; relu * mask with the scale folded into
    linear2) give the values and gradients of the plain formulas under the same mask."""
    torch.manual_seed(0)
    ffn = attention.FeedForward(16, 32, dropout=0.3).train()
    x = torch.randn(2, 5, 16, requires_grad=True)
    a = torch.randn(2, 5, 16, requires_grad=True)
    monkeypatch.setattr(attention, "keep_mask", _fixed_mask(1))
    fused = ffn.dropout.residual(x, ffn(a))
    fused.square().sum().backward()
    got, got_grads = fused.detach(), _grads(ffn, x, a)
    for t in [x, a, *ffn.parameters()]:
        t.grad = None
    masks = _fixed_mask(1)
    keep_h, scale = masks((2, 5, 32), 0.3, a)
    keep_r, _ = masks((2, 5, 16), 0.3, a)
    plain = x + ffn.linear2(torch.relu(ffn.linear1(a)) * keep_h * scale) * keep_r * scale
    plain.square().sum().backward()
    torch.testing.assert_close(got, plain.detach())
    for g, ref in zip(got_grads, _grads(ffn, x, a), strict=True):
        torch.testing.assert_close(g, ref)
