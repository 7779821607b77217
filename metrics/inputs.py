"""Checked inputs of the metrics: image labels and scores, pixel masks, the normal-pixel budget and its
seeded subsample. Pure numpy; every bad input raises ``ValueError`` in one line."""

from __future__ import annotations

import numbers

import numpy as np

#: entries per chunk of the subsample's draw
SUBSAMPLE_CHUNK = 1 << 20


def image_inputs(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """(bool labels, numeric scores) as flat arrays of one size; labels must be 0/1, scores free of NaN."""
    y = np.asarray(labels).ravel()
    s = np.asarray(scores).ravel()
    if y.shape != s.shape:
        raise ValueError(f"labels and scores differ in size: {y.size} vs {s.size}")
    if y.dtype != bool:
        if y.size and not np.isin(y, (0, 1)).all():
            raise ValueError("labels must be 0/1 (or bool)")
        y = y.astype(bool)
    if s.dtype.kind not in "fiu":
        raise ValueError(f"scores must be numeric, got dtype {s.dtype}")
    if s.dtype.kind == "f" and np.isnan(s).any():
        raise ValueError("scores contain NaN")
    return y, s


def single_class(y: np.ndarray) -> bool:
    """Whether bool labels ``y`` hold fewer than two classes (the image metrics are then undefined)."""
    return y.size == 0 or bool(y.all()) or not bool(y.any())


def binary_masks(m: np.ndarray) -> np.ndarray:
    """A mask array as bool; only bool or 0/1 masks are accepted (readers binarise their datasets' values)."""
    if m.dtype == bool:
        return m
    nonzero = m != 0
    if np.any(m[nonzero] != 1):
        raise ValueError("masks must be bool or 0/1")
    return nonzero


def check_normal_pixel_budget(value) -> int | None:
    """``value`` as an int >= 1 or None (exact); anything else raises ``ValueError``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"normal_pixel_budget must be an int or None, got {value!r}")
    if int(value) < 1:
        raise ValueError(f"normal_pixel_budget must be >= 1, got {value}")
    return int(value)


def subsample(values: np.ndarray, k: int, seed: int) -> np.ndarray:
    """A uniform random sample of ``k`` entries of ``values`` without replacement (seeded).

    Exact and memory-light: a multivariate hypergeometric draw splits ``k`` over chunks of 2**20
    entries, then each chunk is sampled without replacement, so no index array of the full size
    is ever built.
    """
    rng = np.random.default_rng(seed)
    starts = np.arange(0, values.size, SUBSAMPLE_CHUNK)
    sizes = np.minimum(SUBSAMPLE_CHUNK, values.size - starts)
    counts = rng.multivariate_hypergeometric(sizes, k)
    out = np.empty(k, dtype=values.dtype)
    filled = 0
    for start, size, count in zip(starts, sizes, counts, strict=True):
        if count:
            idx = rng.choice(int(size), size=int(count), replace=False)
            out[filled : filled + count] = values[start : start + size][idx]
            filled += count
    return out
