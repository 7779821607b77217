"""Attention, dropout and feed-forward blocks shared by UniAD and the vanilla transformer (Table S1).

Position embeddings are added to the query and the key of every attention, never to the value
(as the official ``models/reconstructions/uniad.py``). The parameters are ``nn.MultiheadAttention``'s
(same names, same init, so official checkpoints load unchanged), but the forward is written out so
that it runs on the fast kernels:

* without dropout (evaluation) or on CUDA: ``F.scaled_dot_product_attention`` with the neighbor mask as an
  additive mask (fused flash / memory-efficient kernels; CUDA draws the attention dropout inside them). The
  additive form (-inf where blocked) is built once per mask, dtype and device (``additive_mask``), in a buffer
  whose rows are padded to 16 elements, the alignment of the memory-efficient kernel: SDPA would otherwise
  invert, convert and pad a boolean mask on every call. ``sdpa_kernels`` records which kernel SDPA chose;
  the cuDNN kernel is off unless ``bench.precision.allow_cudnn_attention`` asks for it;
* training on CPU with attention dropout, which PyTorch's fused CPU kernel does not support: the same
  mathematics written out, ``softmax(q k^T / sqrt(d) + M) -> dropout -> @ v`` with the additive mask
  fused into the ``baddbmm`` and the dropout's 1/(1-p) applied to ``v`` (6x smaller than the attention matrix).

Dropout on CPU (``Dropout``) draws its keep mask from 64-bit random words split into four 16-bit
lanes: one word per four elements (``bernoulli_``, one Mersenne-Twister draw per element, was the largest
item of the bf16 training step's profile), from an SFC64 stream seeded by torch's generator. The mask is a
0/1 tensor in the activation's dtype, applied by multiplication. An element is dropped with probability
``round(p * 2**16) / 2**16`` (0.1000061 for p = 0.1) and kept ones are scaled by the exact inverse of
the keep probability, so each activation's expectation is unchanged. Under ``torch.compile`` and on
CUDA the standard ``F.dropout`` is used (inductor and CUDA generate their own fused random numbers).
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.weak import WeakTensorKeyDictionary

from models.linear_attention import linear_attention

_LANES = 1 << 16
_ALIGN = 16  # elements: the memory-efficient SDPA kernel's alignment of a mask row
_ADDITIVE: WeakTensorKeyDictionary = WeakTensorKeyDictionary()  # bool mask -> {(dtype, device, version): buffer}
_KERNELS: dict | None = None  # set by ``sdpa_kernels``: {"train" | "eval": kernel names seen}
_SDPA_NAMES = {0: "math", 1: "flash", 2: "memory-efficient", 3: "cudnn", 4: "overrideable"}


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(N, M) view, 0 where allowed and -inf where ``mask`` (bool, True = blocked) blocks, in ``dtype``.

    Built once per mask, dtype and device, and kept while the mask lives (a model's buffer). The view's rows
    lie ``_ALIGN``-aligned in a padded buffer, so SDPA neither converts nor pads it per call. Under
    ``torch.compile`` it is built inline (inductor folds it).
    """
    if torch.compiler.is_compiling():
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(mask, float("-inf"))
    per_mask = _ADDITIVE.setdefault(mask, {})
    key = (dtype, mask.device, mask._version)
    buffer = per_mask.get(key)
    if buffer is None:
        n, m = mask.shape
        padded = -(-m // _ALIGN) * _ALIGN
        with torch.inference_mode(False), torch.no_grad():  # reusable by training after an inference pass
            buffer = torch.zeros(n, padded, dtype=dtype, device=mask.device)[:, :m].masked_fill_(mask, float("-inf"))
        per_mask.clear()  # an older version or dtype of this mask is not needed again
        per_mask[key] = buffer
    return buffer


@contextlib.contextmanager
def sdpa_kernels():
    """Record the SDPA kernel each attention call would run: yields ``{"train": set, "eval": set}``.

    Training on CPU with dropout runs the written-out mathematics (``"math (CPU dropout path)"``); the others
    ask PyTorch's kernel selection (``torch._fused_sdp_choice``, the choice ``scaled_dot_product_attention``
    makes under the current backend flags).
    """
    global _KERNELS
    saved, _KERNELS = _KERNELS, {"train": set(), "eval": set()}
    try:
        yield _KERNELS
    finally:
        _KERNELS = saved


def _record_kernel(training: bool, q, k, v, attn_mask, p: float, cpu_dropout: bool) -> None:
    if cpu_dropout:
        name = "math (CPU dropout path)"
    else:
        try:
            name = _SDPA_NAMES.get(int(torch._fused_sdp_choice(q, k, v, attn_mask, p, False)), "unknown")
        except (AttributeError, RuntimeError) as exc:  # a private API: say so rather than fail a benchmark
            name = f"unknown ({type(exc).__name__})"
    _KERNELS["train" if training else "eval"].add(f"{name}, {str(q.dtype).removeprefix('torch.')}")


def _cpu_fast(x: torch.Tensor) -> bool:
    return x.device.type == "cpu" and not torch.compiler.is_compiling()


def random_words(n: int) -> torch.Tensor:
    """``n`` uniform 64-bit words (CPU) from an SFC64 stream seeded by one draw of torch's global generator.

    SFC64 (numpy) fills words 1.8x faster than torch's Mersenne Twister; seeding it from the global generator keeps
    every draw fixed by ``torch.manual_seed`` and restored with the checkpointed RNG state on resume.
    """
    seed = int(torch.randint(-(2**63), 2**63 - 1, (), dtype=torch.int64)) & (2**64 - 1)
    return torch.from_numpy(np.random.SFC64(seed).random_raw(n).view(np.int64))


def keep_mask(shape: torch.Size, p: float, like: torch.Tensor) -> tuple[torch.Tensor, float]:
    """(mask in ``like``'s dtype: 1.0 kept, 0.0 dropped; keep scale 1/(1 - p')), p' = round(p * 2**16) / 2**16.

    The 0/1 decision is written over the random lanes in place; for 16-bit floats those integers then become
    the bit pattern of 1.0 and are viewed as the float mask (no new buffer), for other dtypes they are converted.
    ``x * mask`` runs on the vectorised same-dtype multiply, where ``torch.where(drop, 0, x)`` on a random mask
    is a branchy scalar loop and a bool mask is cast again on every use (each about 3x slower at attention size).
    """
    n = 1
    for s in shape:
        n *= s
    lanes = random_words((n + 3) // 4).view(torch.int16)[:n].view(shape)  # 4 uniform 16-bit lanes per word
    cut = round(p * _LANES)
    keep = lanes.ge_(cut - _LANES // 2)  # lanes lie in [-2**15, 2**15): 1 where kept, 0 where dropped
    if like.dtype in (torch.bfloat16, torch.float16):
        one = int(torch.ones((), dtype=like.dtype).view(torch.int16))
        keep = keep.mul_(one).view(like.dtype)
    else:
        keep = keep.to(like.dtype)
    return keep.to(like.device), _LANES / (_LANES - cut)


class _AddMaskScale(torch.autograd.Function):
    """``x + a * keep * scale`` in one pass (``addcmul``), saving only the mask; the gradient of ``a`` is one
    more. A plain dropout is the case ``x = 0``."""

    @staticmethod
    def forward(ctx, x, a, keep, scale):
        ctx.save_for_backward(keep)
        ctx.scale, ctx.dtypes = scale, (x.dtype, a.dtype)
        return torch.addcmul(x, a, keep, value=scale)

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        x_dtype, a_dtype = ctx.dtypes
        grad_x = grad.to(x_dtype) if ctx.needs_input_grad[0] else None
        grad_a = torch.addcmul(grad.new_zeros(()), grad, keep, value=ctx.scale).to(a_dtype)
        return grad_x, grad_a, None, None


class _ReluMask(torch.autograd.Function):
    """``relu(h) * keep``; its gradient needs only the output (> 0 exactly where h > 0 and kept)."""

    @staticmethod
    def forward(ctx, h, keep):
        out = torch.relu(h).mul_(keep)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, out, 0), None


class Dropout(nn.Dropout):
    """``nn.Dropout`` whose CPU training path draws its mask four elements per random word."""

    def _cpu_train(self, x: torch.Tensor) -> bool:
        return self.training and 0 < self.p < 1 and _cpu_fast(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._cpu_train(x):
            return F.dropout(x, self.p, self.training)
        keep, scale = keep_mask(x.shape, self.p, x)
        return _AddMaskScale.apply(x.new_zeros(()), x, keep, scale)

    def residual(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``x + dropout(a)``: on the CPU training path the add and the mask are one pass."""
        if not self._cpu_train(a):
            return x + self.forward(a)
        if a.dtype != x.dtype:  # a bf16 branch onto an fp32 stream (``fp32_scores``): added in fp32
            a = a.to(x.dtype)
        keep, scale = keep_mask(a.shape, self.p, a)
        return _AddMaskScale.apply(x, a, keep, scale)


def _compute_dtype(param: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``param`` cast once to the autocast dtype (its slices then need no cast of their own)."""
    kind = x.device.type
    if torch.is_autocast_enabled(kind):
        return param.to(torch.get_autocast_dtype(kind))
    return param


class PositionalAttention(nn.Module):
    """Multi-head attention with the position embedding on query and key.

    ``fp32_scores``: under a bf16 autocast, the query/key projections, the scores q k^T, their softmax and
    the dropout on them stay fp32 (the value and output projections and the weighted sum run in bf16).
    ``linear``: Dinomaly's linear attention (``models.linear_attention``, in fp32) in place of the softmax, on
    the same projections, with the position embedding on its queries and keys; it takes no mask.
    A softmax turns an absolute error of its input into a relative error of its output: bf16 keeps 8
    significant bits, so a score of 10 is off by up to 0.03, which changes its weight by up to 3%. With q, k
    and the scores in fp32 the demo's AUROC stays within fp32's seed spread, where plain bf16 loses 0.6 image
    points (docs/performance.md). Without autocast the flag changes nothing.
    """

    def __init__(self, dim: int, heads: int, dropout: float, fp32_scores: bool = False, linear: bool = False):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.fp32_scores = fp32_scores
        self.linear = linear  # linear attention (models.linear_attention) on the same projections

    def forward(self, query, key_value, pos, mask=None):
        """query: (B, N, D); key_value: (B, M, D); pos: (N, D); mask: (N, M) bool, True = blocked, or None."""
        mha = self.mha
        b, n, d = query.shape
        heads = mha.num_heads
        kind = query.device.type
        if self.fp32_scores and torch.is_autocast_enabled(kind):
            w, bias = mha.in_proj_weight, mha.in_proj_bias
            with torch.autocast(kind, enabled=False):
                q, k = self._query_key(query.float(), key_value.float(), pos.float(), w, bias)
        else:
            w = _compute_dtype(mha.in_proj_weight, query)
            bias = _compute_dtype(mha.in_proj_bias, query)
            q, k = self._query_key(query, key_value, pos, w, bias)
        v = F.linear(key_value, w[2 * d :], bias[2 * d :])  # in the autocast dtype either way
        q, k, v = (t.reshape(b, -1, heads, d // heads).transpose(1, 2) for t in (q, k, v))
        if self.linear:  # UniAD with linear attention (model.attention=linear): no weights, no mask, no dropout
            with torch.autocast(kind, enabled=False):
                out = linear_attention(q.float(), k.float(), v.float()).to(v.dtype)
            return F.linear(out.transpose(1, 2).reshape(b, n, d), mha.out_proj.weight, mha.out_proj.bias)
        p = mha.dropout if self.training else 0.0
        # explicit dtypes from here: q and k fp32 with a bf16 v must not be cast back to bf16 by autocast
        with torch.autocast(kind, enabled=False):
            cpu_dropout = p > 0 and _cpu_fast(query)
            if not cpu_dropout and v.dtype != q.dtype:  # SDPA takes one dtype: the weighted sum in fp32 as well
                v = v.to(q.dtype)
            attn_mask = None if mask is None else additive_mask(mask, q.dtype)
            if _KERNELS is not None and not torch.compiler.is_compiling():
                _record_kernel(self.training, q, k, v, attn_mask, p, cpu_dropout)
            if cpu_dropout:
                out = self._attention_with_cpu_dropout(q, k, v, attn_mask, p)
            else:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)
        out = out.transpose(1, 2).reshape(b, n, d)
        return F.linear(out, mha.out_proj.weight, mha.out_proj.bias)

    @staticmethod
    def _query_key(query, key_value, pos, w, bias):
        """q and k, the position embedding added to both inputs; self-attention projects them in one matmul."""
        d = query.shape[-1]
        if query is key_value:
            return F.linear(query + pos, w[: 2 * d], bias[: 2 * d]).chunk(2, dim=-1)
        return F.linear(query + pos, w[:d], bias[:d]), F.linear(key_value + pos, w[d : 2 * d], bias[d : 2 * d])

    @staticmethod
    def _attention_with_cpu_dropout(q, k, v, additive, p):
        """softmax(q k^T / sqrt(d) + M), dropout, @ v: the math path of SDPA, with the cheap dropout.

        ``additive``: the (N, M) additive mask in q's dtype, or None. Scores, softmax and mask in q's dtype;
        the weighted sum in v's (they differ under ``fp32_scores``).
        """
        b, h, n, dh = q.shape
        m = k.shape[2]
        q, k, v = q.reshape(b * h, n, dh), k.reshape(b * h, m, dh), v.reshape(b * h, m, dh)
        if additive is None:
            additive = q.new_zeros(1, 1, 1)
        # the mask and the 1/sqrt(d) scale fused into the matmul: M + (q k^T) / sqrt(d)
        attn = torch.baddbmm(additive, q, k.transpose(1, 2), alpha=dh**-0.5).softmax(dim=-1)
        keep, scale = keep_mask(attn.shape, p, attn)
        # dropout's 1/(1-p) moves onto v, 6x smaller than the attention matrix: (attn * keep) @ (v * scale)
        return torch.bmm((attn * keep).to(v.dtype), v * scale).reshape(b, h, n, dh)


class FeedForward(nn.Module):
    """Table S1: Linear(D→F) + ReLU + Linear(F→D), with dropout as the official code."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.dropout = Dropout(dropout)

    def forward(self, x):
        h = self.linear1(x)
        if not self.dropout._cpu_train(h):
            return self.linear2(self.dropout(torch.relu(h)))
        # CPU training: relu and the mask in one autograd node, the keep scale folded into linear2's weight
        keep, scale = keep_mask(h.shape, self.dropout.p, h)
        return F.linear(_ReluMask.apply(h, keep), self.linear2.weight * scale, self.linear2.bias)


class EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer (neighbor-masked when a mask is given)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.attn = PositionalAttention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)

    def forward(self, x, pos, mask=None):
        x = self.norm1(self.dropout1.residual(x, self.attn(x, x, pos, mask)))
        return self.norm2(self.dropout2.residual(x, self.ffn(x)))
