"""MLP feature-reconstruction baseline (UniAD supplementary C.1 "MLP", with the C.3 assistant modules).

C.1: "MLP is revised from the transformer by substituting all attention layers. 1) The self-attention
is replaced by a linear projection, followed by layer normalization and ReLU activation. 2) The
cross-attention between two sets of inputs is changed to a concatenation along the channel dimension
and a linear projection, followed by layer normalization and ReLU activation. 3) The position
embeddings are removed because MLP could keep spatial information."

Pipeline (C.3): features (B, C_org, H, W) → H*W tokens (B, HW, C_org) → [feature jitter, training
only, ``fj=True``] → channel reduction Linear(C_org→C) → encoder → decoder → LayerNorm →
channel recovery Linear(C→C_org) → f_rec (B, C_org, H, W).

Choices the text leaves open, kept as close as possible to the vanilla transformer baseline:

* Every layer keeps the transformer's residual + post-norm layout and dropout (default 0.1):
  encoder ``x = LN(x + Drop(P(x))); x = LN(x + Drop(FFN(x)))`` with ``P = Linear(C,C) + LN + ReLU``;
  decoder ``x = LN(x + Drop(P(x))); x = LN(x + Drop(Q([x, memory]))); x = LN(x + Drop(FFN(x)))``
  with ``Q = Linear(2C,C) + LN + ReLU`` on the channel-wise concatenation with the encoder output.
* FFN of Table S1: Linear(C→1024) + ReLU + Linear(1024→C).
* The first decoder layer's input is a learned query embedding ``Embedding(H*W, C)``, as the vanilla
  transformer's; it is the decoder's input, not a position embedding added to attention inputs
  (there is no attention), and there are no position-embedding parameters.
* A final LayerNorm after the decoder, as the transformer's decoder norm.
* All mixing is over channels only, per token: the spatial layout is kept by the token order.
* Xavier-uniform weights and zero biases for every Linear (LayerNorm default), as the official code.
"""

from __future__ import annotations

import torch
from torch import nn

from models.init import xavier_init_
from models.jitter import JITTER_RULES, FeatureJitter
from rules import INT, REAL


class ProjectionBlock(nn.Sequential):
    """C.1's substitute for an attention: Linear(in→out) + LayerNorm + ReLU."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.ReLU(inplace=True))


class MLPFeedForward(nn.Module):
    """Table S1: Linear(C→F) + ReLU + Linear(F→C), dropout in between as the transformer."""

    def __init__(self, dim: int, hidden: int, dropout: float):
        super().__init__()
        self.linear1 = nn.Linear(dim, hidden)
        self.linear2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(torch.relu(self.linear1(x))))


class MLPEncoderLayer(nn.Module):
    """Transformer encoder layer with the self-attention replaced by a ProjectionBlock."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.proj = ProjectionBlock(dim, dim)
        self.ffn = MLPFeedForward(dim, ffn_dim, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout1(self.proj(x)))
        return self.norm2(x + self.dropout2(self.ffn(x)))


class MLPDecoderLayer(nn.Module):
    """Transformer decoder layer: self-attention → ProjectionBlock, cross-attention → concat + projection."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float):
        super().__init__()
        self.proj = ProjectionBlock(dim, dim)
        self.cross = ProjectionBlock(2 * dim, dim)
        self.ffn = MLPFeedForward(dim, ffn_dim, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.dropout1(self.proj(x)))
        x = self.norm2(x + self.dropout2(self.cross(torch.cat([x, memory], dim=-1))))
        return self.norm3(x + self.dropout3(self.ffn(x)))


class MLPReconstruction(nn.Module):
    """C.1 MLP baseline: (B, C_org, H, W) features → reconstructed (B, C_org, H, W)."""

    RULES = {"hidden_dim": INT(1), "num_encoder_layers": INT(0), "num_decoder_layers": INT(0),
             "dim_feedforward": INT(1), "dropout": REAL(0, 1, open_high=True), **JITTER_RULES}

    def __init__(
        self,
        in_channels: int,
        feature_size: tuple[int, int],
        hidden_dim: int = 256,
        num_encoder_layers: int = 4,
        num_decoder_layers: int = 4,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        fj: bool = False,
        fj_scale: float = 20.0,
        fj_prob: float = 1.0,
    ):
        super().__init__()
        h, w = feature_size
        self.feature_size = (int(h), int(w))
        self.jitter = FeatureJitter(fj_scale, fj_prob) if fj else None
        self.channel_reduction = nn.Linear(in_channels, hidden_dim)
        self.encoder = nn.ModuleList(
            MLPEncoderLayer(hidden_dim, dim_feedforward, dropout) for _ in range(num_encoder_layers)
        )
        self.query_embed = nn.Embedding(h * w, hidden_dim)
        self.decoder = nn.ModuleList(
            MLPDecoderLayer(hidden_dim, dim_feedforward, dropout) for _ in range(num_decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden_dim)
        self.channel_recovery = nn.Linear(hidden_dim, in_channels)
        xavier_init_(self)

    def forward(self, f_org: torch.Tensor) -> torch.Tensor:
        b, c, h, w = f_org.shape
        if (h, w) != self.feature_size:
            raise ValueError(f"MLPReconstruction was built for {self.feature_size} features, got {(h, w)}")
        tokens = f_org.flatten(2).transpose(1, 2)  # (B, HW, C_org)
        if self.jitter is not None:
            tokens = self.jitter(tokens)
        memory = self.channel_reduction(tokens)
        for layer in self.encoder:
            memory = layer(memory)
        x = self.query_embed.weight.unsqueeze(0).expand(b, -1, -1).to(memory.dtype)
        for layer in self.decoder:
            x = layer(x, memory)
        rec = self.channel_recovery(self.decoder_norm(x))  # (B, HW, C_org)
        return rec.transpose(1, 2).reshape(b, c, h, w)
