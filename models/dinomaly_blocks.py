"""The pieces of Dinomaly's decoder (Guo et al., "Dinomaly: The Less Is More Philosophy in Multi-Class
Unsupervised Anomaly Detection", sec. 3; official ``models/vision_transformer.py``): the noisy bottleneck,
the attentions and the pre-norm transformer block.
"""

from __future__ import annotations

import torch
from torch import nn

from models.linear_attention import linear_attention

LAYERNORM_EPS = 1e-8  # the official decoder's ``partial(nn.LayerNorm, eps=1e-8)``
ATTENTIONS = ("linear", "softmax")


class NoisyBottleneck(nn.Module):
    """MLP ``dim → hidden → dim`` (GELU) with dropout on its input, hidden layer and output (sec. 3.2, the
    official ``bMlp``): the dropout is the noise that keeps the decoder from reproducing anomalies."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(self.drop(x))))))


class Mlp(nn.Module):
    """The block's feed-forward part: ``dim → hidden → dim`` with GELU (no dropout in Dinomaly's decoder)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


def neighbour_blocked(side: int, size: int, prefix: int) -> torch.Tensor:
    """Boolean (N, N), N = prefix + side², True where token i may not attend to token j: patch tokens in
    each other's ``size`` x ``size`` window (offsets ``|d| <= size // 2`` in rows and columns, clipped at the
    borders; the official ``ViTill.generate_mask``). Prefix tokens are never blocked, as rows or columns."""
    rows = torch.arange(side).repeat_interleave(side)
    cols = torch.arange(side).repeat(side)
    r = size // 2
    near = ((rows[None, :] - rows[:, None]).abs() <= r) & ((cols[None, :] - cols[:, None]).abs() <= r)
    blocked = torch.zeros(prefix + side * side, prefix + side * side, dtype=torch.bool)
    blocked[prefix:, prefix:] = near
    return blocked


class Attention(nn.Module):
    """Multi-head self-attention with one qkv projection (with bias) and an output projection.

    ``kind="softmax"``: ``softmax(q k^T / sqrt(d))``; a neighbour mask (``blocked``) zeroes the weights of
    the blocked tokens *after* the softmax, without renormalising the rest (the official ``Attention``).
    ``kind="linear"``: ``models.linear_attention`` (the official ``LinearAttention2``), which has no weights
    to mask.
    """

    def __init__(self, dim: int, heads: int, kind: str):
        super().__init__()
        if kind not in ATTENTIONS:
            raise ValueError(f"model.attention={kind!r} is unknown; choose one of {', '.join(ATTENTIONS)}")
        self.heads = heads
        self.kind = kind
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, blocked: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        if self.kind == "linear":
            out = linear_attention(q, k, v)
        else:
            attn = torch.matmul(q, k.transpose(-2, -1)).mul(self.scale).softmax(dim=-1)
            if blocked is not None:
                attn = attn.masked_fill(blocked, 0.0)
            out = torch.matmul(attn, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))`` (LayerNorm eps 1e-8)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, attention: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYERNORM_EPS)
        self.attn = Attention(dim, heads, attention)
        self.norm2 = nn.LayerNorm(dim, eps=LAYERNORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, blocked: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), blocked)
        return x + self.mlp(self.norm2(x))


def trunc_normal_init_(module: nn.Module, std: float = 0.01) -> None:
    """The recipe's init of the trained parts: linear weights truncated normal (std 0.01, cut at +-3 std),
    biases 0, LayerNorms weight 1 and bias 0 (``dinomaly_mvtec_uni.py``)."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=std, a=-3 * std, b=3 * std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


