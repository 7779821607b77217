"""The official initializer, shared by UniAD and the C.1 baselines: Xavier-uniform weights, zero biases
(the official ``models/initializer.py``)."""

from __future__ import annotations

from torch import nn


def xavier_init_(module: nn.Module) -> None:
    """Xavier-uniform weights, zero biases for Linear/Conv layers (the official initializer).

    ``nn.MultiheadAttention``'s in-projection is not a Linear and keeps its own init, as officially.
    """
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
