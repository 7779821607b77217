"""Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs"), as Dinomaly's decoder uses it.

Queries and keys go through the feature map ``elu(x) + 1`` instead of a softmax, so the attention of a
query over all keys is ``phi(q) (phi(K)^T V) / (phi(q) . sum_j phi(k_j))``: the key-value product is formed
once per head, the cost is linear in the number of tokens, and there is no attention matrix, hence nothing
for a neighbour mask to block (Dinomaly sec. 3.3: its unfocused attention already keeps the decoder from
copying a token's own neighbourhood). Dinomaly's ``LinearAttention2`` (``models/vision_transformer.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_map(x: torch.Tensor) -> torch.Tensor:
    """``elu(x) + 1``: positive, so the normaliser ``phi(q) . sum phi(k)`` never vanishes."""
    return F.elu(x) + 1.0


def linear_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(..., N, d) queries, (..., M, d) keys and (..., M, e) values → (..., N, e), per head.

    The feature map is applied here; ``q`` and ``k`` are the projections.
    """
    q, k = feature_map(q), feature_map(k)
    kv = torch.einsum("...sd,...se->...de", k, v)  # sum over keys of k_j v_j^T
    z = 1.0 / torch.einsum("...sd,...d->...s", q, k.sum(dim=-2))  # one normaliser per query
    return torch.einsum("...de,...sd,...s->...se", kv, q, z)
