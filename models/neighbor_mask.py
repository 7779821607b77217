"""Neighbor masked attention (NMA), UniAD main paper Sec. 3.3.

Token i (index h*W + w on the feature grid) may not attend to any token inside its own
k_h x k_w neighbourhood (itself included, clipped at the borders); it attends to all others.
"""

import torch


def neighbor_mask(feature_size: tuple[int, int], neighbor_size: tuple[int, int]) -> torch.Tensor:
    """Boolean (HW, HW) matrix, True where attention is *blocked*."""
    h, w = feature_size
    kh, kw = neighbor_size
    rows = torch.arange(h).repeat_interleave(w)  # row of token i
    cols = torch.arange(w).repeat(h)  # column of token i
    # the official window is rows max(h1 - kh//2, 0) : min(h1 + kh - kh//2, H), i.e. offsets [-kh//2, kh - kh//2)
    dr = rows[None, :] - rows[:, None]
    dc = cols[None, :] - cols[:, None]
    in_rows = (dr >= -(kh // 2)) & (dr < kh - kh // 2)
    in_cols = (dc >= -(kw // 2)) & (dc < kw - kw // 2)
    blocked = in_rows & in_cols
    if blocked.all(dim=1).any():
        raise ValueError(
            f"model.neighbor_size={list(neighbor_size)} masks every token of the {h}x{w} feature grid; "
            "choose a smaller neighbor_size"
        )
    return blocked


def additive_mask(blocked: torch.Tensor) -> torch.Tensor:
    """Float mask for attention logits: -inf where blocked, 0 elsewhere (the official form)."""
    return torch.zeros(blocked.shape).masked_fill(blocked, float("-inf"))
