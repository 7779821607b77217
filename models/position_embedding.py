"""Learned position embedding of UniAD (DETR-style row/column tables).

Token (h, w) gets ``[col_embed[w] | row_embed[h]]``; it is added to queries and keys of every
attention, never to values or to the token stream.
"""

import torch
from torch import nn


class LearnedPositionEmbedding(nn.Module):
    def __init__(self, feature_size: tuple[int, int], dim: int):
        super().__init__()
        h, w = feature_size
        self.feature_size = (h, w)
        self.row_embed = nn.Embedding(h, dim // 2)
        self.col_embed = nn.Embedding(w, dim - dim // 2)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self) -> torch.Tensor:
        """(HW, dim) embedding, row-major token order."""
        h, w = self.feature_size
        col = self.col_embed.weight[None, :, :].expand(h, w, -1)
        row = self.row_embed.weight[:, None, :].expand(h, w, -1)
        return torch.cat([col, row], dim=-1).reshape(h * w, -1)
