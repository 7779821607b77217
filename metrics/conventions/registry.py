"""The one table of conventions: a row per published evaluation code, declared beside it with
``@register_convention`` (name, position, the legend line of the report tables, its collector).

``eval.conventions`` accepts exactly the registered names; ``Conventions`` (``metrics.conventions.collect``)
builds each one's collector from its row, so an unknown name can never be computed as another one.
"""

from __future__ import annotations

from dataclasses import dataclass

#: the legend of the suite's own metrics, beside the conventions' in the protocol tables
OURS_LEGEND = ("exact (every distinct score a threshold), AUROC not flipped, AUPRO to FPR 0.3 divided by 0.3, "
               "image score = max of the 16x16 average-pooled map, mean over classes")


@dataclass(frozen=True)
class Convention:
    """One convention: its name in ``eval.conventions`` and the record, its position among the
    conventions, its legend line, and the collector class (``add`` class by class, ``result``)."""

    name: str
    order: int
    legend: str
    collector: type


_CONVENTIONS: dict[str, Convention] = {}


def register_convention(name: str, *, order: int, legend: str):
    """Class decorator: register the decorated collector as convention ``name``.

    The collector is made with ``pool_size`` (``eval.pool_size``) and gives ``add(category, labels,
    scores, masks, maps)`` (bool labels and masks, float32 maps) and ``result() -> dict``. A name
    registered twice raises ``ValueError``.
    """
    if name in _CONVENTIONS or name == "ours":
        raise ValueError(f"convention {name!r} is registered already (or reserved)")

    def wrap(cls: type) -> type:
        _CONVENTIONS[name] = Convention(name, int(order), legend, cls)
        return cls

    return wrap


def unregister_convention(name: str) -> None:
    """Remove convention ``name`` (one a test registered for its own use)."""
    del _CONVENTIONS[name]


def convention_names() -> tuple[str, ...]:
    """Every registered convention, by ``order``."""
    return tuple(c.name for c in sorted(_CONVENTIONS.values(), key=lambda c: (c.order, c.name)))


def convention(name: str) -> Convention:
    """The row of ``name``; an unknown name raises ``ValueError`` naming it and the known ones."""
    try:
        return _CONVENTIONS[name]
    except (KeyError, TypeError):
        raise ValueError(f"eval.conventions: unknown {name!r}; choose among {', '.join(convention_names())}") \
            from None


def legend(name: str) -> str:
    """The legend line of convention ``name`` (or ``ours``) in the report tables: ``name: text``."""
    return f"{name}: {OURS_LEGEND if name == 'ours' else convention(name).legend}"
