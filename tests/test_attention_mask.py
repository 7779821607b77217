"""The neighbor mask as an additive buffer built once per mask and dtype (models/attention.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models import attention
from models.attention import PositionalAttention, additive_mask, sdpa_kernels
from models.neighbor_mask import neighbor_mask


def test_additive_mask_is_built_once_per_mask_and_dtype_with_aligned_rows():
    mask = neighbor_mask((14, 14), (7, 7))  # 196 tokens: not a multiple of the kernel's 16-element alignment
    a = additive_mask(mask, torch.float32)
    assert additive_mask(mask, torch.float32) is a  # cached, not rebuilt per call
    b = additive_mask(mask, torch.bfloat16)
    assert b.dtype == torch.bfloat16 and additive_mask(mask, torch.bfloat16) is b
    assert a.shape == (196, 196) and a.stride() == (208, 1)  # rows padded to 16 elements: SDPA needs no copy
    assert torch.equal(torch.isinf(a), mask) and (a[mask] < 0).all() and (a[~mask] == 0).all()
    mask[0, 0] = ~mask[0, 0]  # an in-place change of the mask is seen (its version moves)
    rebuilt = additive_mask(mask, torch.float32)
    assert rebuilt is not a and torch.isinf(rebuilt[0, 0]) == mask[0, 0]


def test_the_additive_mask_gives_the_boolean_masks_attention():
    torch.manual_seed(0)
    mask = neighbor_mask((6, 6), (3, 3))
    q, k, v = (torch.randn(2, 4, 36, 8) for _ in range(3))
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=~mask)
    got = F.scaled_dot_product_attention(q, k, v, attn_mask=additive_mask(mask, q.dtype))
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_an_attention_call_converts_no_mask(monkeypatch):
    """After the first call, neither the CPU dropout path nor SDPA builds a mask: no masked_fill, no inversion."""
    torch.manual_seed(0)
    attn = PositionalAttention(16, 4, dropout=0.1)
    mask = neighbor_mask((4, 4), (3, 3))
    x, pos = torch.randn(2, 16, 16), torch.randn(16, 16)
    calls = []
    real = torch.Tensor.masked_fill_

    def counted_fill(self, *args):
        calls.append("masked_fill_")
        return real(self, *args)

    def counted_invert(self):
        calls.append("~")
        return torch.logical_not(self)

    for training in (True, False):
        attn.train(training)
        attn(x, x, pos, mask)  # builds the buffer
        calls.clear()
        monkeypatch.setattr(torch.Tensor, "masked_fill_", counted_fill)
        monkeypatch.setattr(torch.Tensor, "__invert__", counted_invert)
        attn(x, x, pos, mask)
        monkeypatch.undo()
        assert calls == [], training


def test_sdpa_kernels_records_each_calls_kernel_and_nothing_outside():
    attn = PositionalAttention(16, 4, dropout=0.1)
    mask = neighbor_mask((4, 4), (3, 3))
    x, pos = torch.randn(2, 16, 16), torch.randn(16, 16)
    with sdpa_kernels() as seen:
        attn.train()
        attn(x, x, pos, mask)
        attn.eval()
        attn(x, x, pos, mask)
    assert seen["train"] == {"math (CPU dropout path), float32"}
    assert len(seen["eval"]) == 1 and next(iter(seen["eval"])).endswith(", float32")
    assert attention._KERNELS is None  # recording stops with the context
