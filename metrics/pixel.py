"""Pixel metrics of maps held in memory, by the same engine as one class's buffer during evaluation."""

from __future__ import annotations


def pixel_values(names, masks, maps, *, normal_pixel_budget: int | None = None, seed: int = 0,
                 fpr_limit: float = 0.3) -> dict[str, float]:
    """The pixel metrics among ``names`` of N x H x W (or H x W, N x 1 x H x W) ``masks`` and ``maps``.

    The maps are copied once into a ``metrics.class_maps.ClassMaps`` in their own precision (float16 as
    float32, integers as int64: the same order and ties), so the inputs are never modified.
    """
    from metrics.class_maps import ClassMaps  # torch: imported to compute, not to read the registry

    buffer = ClassMaps.from_arrays(masks, maps)
    return buffer.pixel_metrics(names, normal_pixel_budget=normal_pixel_budget, seed=seed, fpr_limit=fpr_limit)


def pixel_value(name: str, masks, maps, **options) -> float:
    """One pixel metric (``pixel_values``)."""
    return pixel_values([name], masks, maps, **options)[name]
