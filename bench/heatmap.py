"""Anomaly maps as pictures: a map coloured by a colour map and laid over its image, as a PNG.

One scale per call (``low``, ``high``), given by the caller, so that the pictures of one run (a class's
saved examples, a predicted folder) share it and compare by colour.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

ALPHA = 0.5  # share of the heat map in the overlay


def map_scale(maps: list[np.ndarray]) -> tuple[float, float]:
    """The common scale of some maps: their finite minimum and maximum (0, 1 when there are none)."""
    finite = [m[np.isfinite(m)] for m in maps]
    finite = [f for f in finite if f.size]
    if not finite:
        return 0.0, 1.0
    return float(min(f.min() for f in finite)), float(max(f.max() for f in finite))


def overlay(image: np.ndarray, amap: np.ndarray, low: float, high: float, cmap: str = "jet") -> Image.Image:
    """``image`` (H x W x 3, floats in [0, 1]) with ``amap`` (H x W) coloured on the scale [low, high]."""
    from matplotlib import colormaps

    span = high - low if high > low else 1.0
    heat = colormaps[cmap](np.clip((np.nan_to_num(amap, nan=low) - low) / span, 0.0, 1.0))[..., :3]
    mixed = (1.0 - ALPHA) * np.asarray(image, dtype=np.float64) + ALPHA * heat
    return Image.fromarray(np.clip(np.rint(mixed * 255.0), 0, 255).astype(np.uint8), mode="RGB")


def save_overlay(path: Path, image: np.ndarray, amap: np.ndarray, low: float, high: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    overlay(image, amap, low, high).save(path)
    return path
