"""Attention and feed-forward blocks shared by UniAD and the vanilla transformer (Table S1).

Position embeddings are added to the query and the key of every attention, never to the value
(UNIAD_SPEC 1.5). ``nn.MultiheadAttention`` with ``need_weights=False`` dispatches to PyTorch's
fused scaled-dot-product attention, with the neighbor mask as an additive float mask.
"""

import torch
from torch import nn


class PositionalAttention(nn.Module):
    """Multi-head attention with the position embedding on query and key."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.mha = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)

    def forward(self, query, key_value, pos, mask=None):
        """query, key_value: (B, N, D); pos: (N, D); mask: (N, N) additive or None."""
        if mask is None and self.training and self.mha.dropout > 0 and query.device.type == "cpu":
            # PyTorch's CPU attention kernel with dropout is ~30x slower without a mask than with one
            # (torch 2.14); an all-zero additive mask computes the same thing on the fast path.
            mask = query.new_zeros(query.shape[1], key_value.shape[1])
        out, _ = self.mha(query + pos, key_value + pos, key_value, attn_mask=mask, need_weights=False)
        return out


class FeedForward(nn.Module):
    """Table S1: Linear(D→F) + ReLU + Linear(F→D), with dropout as the official code."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.linear2(self.dropout(torch.relu(self.linear1(x))))


class EncoderLayer(nn.Module):
    """Post-norm transformer encoder layer (neighbor-masked when a mask is given)."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.attn = PositionalAttention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x, pos, mask=None):
        x = self.norm1(x + self.dropout1(self.attn(x, x, pos, mask)))
        return self.norm2(x + self.dropout2(self.ffn(x)))
