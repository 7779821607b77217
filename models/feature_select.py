"""Pick the channels of some backbone stages out of the concatenated frozen feature map.

The suite's backbone returns every configured stage resized to one grid (stride ``feature_stride``)
and concatenated: a CNN's stages by reduction level (``models/backbone.py``), a ViT's chosen blocks
(``models/vit_backbone.py``); the reference methods take a subset of those stages.
"""

from __future__ import annotations

import torch


def stage_channel_index(stage_channels: list[int], available: list[int], wanted: list[int]) -> torch.Tensor:
    """Channel indices of stages ``wanted`` in a map that concatenates stages ``available``."""
    available = [int(s) for s in available]
    if len(stage_channels) != len(available):
        raise ValueError(f"{len(stage_channels)} stage widths for {len(available)} stages {available}")
    missing = [int(s) for s in wanted if int(s) not in available]
    if missing:
        raise ValueError(f"stages {missing} are not extracted (the backbone gives {available}: backbone.outlayers "
                         "of a CNN, backbone.layers of a ViT); add them there")
    starts = [sum(stage_channels[:i]) for i in range(len(stage_channels))]
    index = []
    for s in sorted(int(s) for s in wanted):
        i = available.index(s)
        index.extend(range(starts[i], starts[i] + stage_channels[i]))
    return torch.tensor(index, dtype=torch.long)
