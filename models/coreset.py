"""Greedy k-center coreset selection (PatchCore sec. 3.2, Alg. 1; Sener & Savarese 2018).

Starting from one seeded random element, repeatedly add the element farthest from the selected set.
The result covers the set within twice the optimal k-center radius. PatchCore runs the selection on
a random linear projection of the features (Johnson-Lindenstrauss, ``projection_dim`` dims) to make
each step cheaper; the selected indices then pick the full-dimensional features.
"""

from __future__ import annotations

import torch


def random_projection(x: torch.Tensor, dim: int | None, seed: int = 0) -> torch.Tensor:
    """``x @ R`` with ``R ~ N(0, 1/dim)`` of shape (C, dim); ``x`` itself when ``dim`` is None or >= C."""
    if dim is None or dim >= x.shape[1]:
        return x
    gen = torch.Generator().manual_seed(seed)
    r = torch.randn(x.shape[1], dim, generator=gen) / dim**0.5
    return x @ r.to(x.device, x.dtype)


@torch.no_grad()
def greedy_coreset(x: torch.Tensor, n_select: int, *, projection_dim: int | None = 128, seed: int = 0,
                   start: int | None = None) -> torch.Tensor:
    """Indices (``n_select``,) of a greedy k-center selection of the rows of ``x`` (N, C).

    ``start``: the first index (default: seeded random). Ties go to the lowest index. Memory is
    O(N * projection_dim) plus one N-vector of current distances; each step is one O(N * dim) pass.
    """
    n = x.shape[0]
    if not 0 < n_select <= n:
        raise ValueError(f"coreset size {n_select} must be in 1..{n} (the number of patch features)")
    z = random_projection(x.float(), projection_dim, seed)
    if start is None:
        start = int(torch.randint(n, (1,), generator=torch.Generator().manual_seed(seed)))
    selected = torch.empty(n_select, dtype=torch.long, device=x.device)
    selected[0] = start
    # squared distances as |z|^2 - 2 z.c + |c|^2: one matrix-vector product per step, no (N, dim) temporary
    sq = z.pow(2).sum(1)
    min_dist = (z - z[start]).pow(2).sum(1)
    step = torch.empty_like(min_dist)
    for i in range(1, n_select):
        nxt = torch.argmax(min_dist)
        selected[i] = nxt
        torch.mv(z, z[nxt], out=step)
        step.mul_(-2).add_(sq).add_(sq[nxt])
        torch.minimum(min_dist, step, out=min_dist)
    return selected


def covering_radius(x: torch.Tensor, centers: torch.Tensor) -> float:
    """max over rows of ``x`` of the distance to the nearest selected row (the k-center objective)."""
    return float(torch.cdist(x.float(), x[centers].float()).min(dim=1).values.max())
