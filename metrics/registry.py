"""The one table of metrics: a row per metric, declared beside its code with ``@register_metric``.

Every name list of the suite reads this table: the names ``eval.metrics`` accepts and ``"all"``
expands to, the label and column order of the report tables, the members of mAD and the legends.
The suite's order (of ``"all"``, of a record's values and of mAD's sum) is image metrics first, each
level by ``order``, whatever order the modules register in. Reading it imports neither torch nor
scikit-learn (the reports need only the rows).

An image metric's row holds its function ``f(labels, scores) -> float``; a pixel metric's row holds
its public in-memory function and a *reducer*: the streamed form the engine (``metrics.class_maps``)
feeds chunk by chunk, the same code for maps held in memory and for one class's buffer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_METRICS",
    "MAD",
    "METRICS",
    "Metric",
    "column_order",
    "is_metric",
    "label",
    "mad_members",
    "metric",
    "metric_names",
    "register_metric",
    "resolve_metrics",
    "unregister_metric",
]

LEVELS = ("image", "pixel")
#: the engine's passes over one class's pixels that feed a pixel metric's reducer
PASSES = ("ranked", "regions")
#: what ``eval.metrics`` gives when it is null (conf/eval/default.yaml sets the same two)
DEFAULT_METRICS: tuple[str, ...] = ("image_auroc", "pixel_auroc")
#: ADer's mAD, derived in the reports: the unweighted mean of the class-averaged metrics with ``mad=True``
MAD = "mad"
MAD_LABEL = "mAD"


@dataclass(frozen=True)
class Metric:
    """One metric: what it is, how tables show it, and the code that computes it."""

    name: str  # key in eval.metrics and in the record
    level: str  # "image" (labels, scores) or "pixel" (masks, maps)
    label: str  # column label of the per-class and protocol tables ("pixel AUROC")
    order: int  # column position in tables and results.csv (lower first)
    mad: bool  # one of the metrics mAD averages
    definition: str  # one line, for legends ("pixel-level AUROC")
    fn: Callable[..., float]  # image: f(labels, scores); pixel: f(masks, maps), the in-memory form
    reducer: Callable | None = None  # pixel: f(PixelCounts) -> object with update(chunk) and result()
    needs: str = "ranked"  # pixel: the engine pass whose chunks the reducer reads (PASSES)
    short: str | None = None  # label in the paper's tables ("Det."), when it has one

    @property
    def table_label(self) -> str:
        """The label of a declared (paper) table's column: ``short`` when set, else ``label``."""
        return self.short or self.label


_METRICS: dict[str, Metric] = {}


def register_metric(name: str, *, level: str, label: str, order: int, mad: bool, definition: str,
                    reducer: Callable | None = None, needs: str = "ranked", short: str | None = None):
    """Decorator: register the decorated function as metric ``name`` (one row; see ``Metric``).

    A pixel metric gives its ``reducer`` and the pass it ``needs``; the decorated function is its
    in-memory form ``f(masks, maps)``. A name registered twice raises ``ValueError``.
    """
    if level not in LEVELS:
        raise ValueError(f"metric {name!r}: level must be one of {', '.join(LEVELS)}, got {level!r}")
    if level == "pixel" and (reducer is None or needs not in PASSES):
        raise ValueError(f"pixel metric {name!r} needs a reducer and one of the passes {', '.join(PASSES)}")
    if name in _METRICS or name in ("all", MAD):
        raise ValueError(f"metric {name!r} is registered already (or reserved)")

    def wrap(fn: Callable[..., float]) -> Callable[..., float]:
        _METRICS[name] = Metric(name, level, label, int(order), bool(mad), definition, fn, reducer, needs, short)
        return fn

    return wrap


def unregister_metric(name: str) -> None:
    """Remove metric ``name`` from the table (a metric a test registered for its own use)."""
    del _METRICS[name]


def metric(name: str) -> Metric:
    """The row of ``name``; an unknown name raises ``ValueError`` listing the known ones."""
    try:
        return _METRICS[name]
    except (KeyError, TypeError):
        valid = ", ".join(["all", *metric_names()])
        raise ValueError(f"unknown metric {name!r}; valid names: {valid}") from None


def is_metric(name: str) -> bool:
    return name in _METRICS


def _rows() -> list[Metric]:
    """The rows in the suite's order: image metrics before pixel metrics, each by column ``order``."""
    return sorted(_METRICS.values(), key=lambda m: (LEVELS.index(m.level), m.order, m.name))


def metric_names(level: str | None = None) -> tuple[str, ...]:
    """Every registered name (of one ``level`` when given), in the suite's order (``_rows``)."""
    return tuple(m.name for m in _rows() if level is None or m.level == level)


def resolve_metrics(names: str | Iterable[str] | None) -> tuple[str, ...]:
    """Validate a metric selection and return it as a tuple of names (order kept, duplicates dropped).

    ``names`` is a list/tuple of registered names, a single name, or ``"all"`` (also inside a list,
    e.g. ``["all"]``) meaning every metric in the suite's order; None gives ``DEFAULT_METRICS``.
    An unknown name raises ``ValueError`` with a one-line message listing the valid names.
    """
    if names is None:
        return DEFAULT_METRICS
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for name in names:
        selected = metric_names() if name == "all" else (metric(name).name,)
        out.extend(n for n in selected if n not in out)
    return tuple(out)


def mad_members() -> tuple[str, ...]:
    """The metrics mAD averages, in the suite's order (the order of its sum)."""
    return tuple(m.name for m in _rows() if m.mad)


def column_order() -> tuple[str, ...]:
    """Metric columns of the tables and results.csv: the registered metrics by ``order``, then mAD."""
    return (*(m.name for m in sorted(_METRICS.values(), key=lambda m: (m.order, m.name))), MAD)


def label(name: str) -> str:
    """The label of a metric's column in the per-class and protocol tables (the name when unregistered)."""
    if name == MAD:
        return MAD_LABEL
    row = _METRICS.get(name)
    return row.label if row is not None else name


class _Functions(Mapping):
    """``METRICS``: name -> the metric's in-memory function, in the suite's order (a live view)."""

    def __getitem__(self, name: str) -> Callable[..., float]:
        return _METRICS[name].fn

    def __iter__(self) -> Iterator[str]:
        return iter(metric_names())

    def __len__(self) -> int:
        return len(_METRICS)


METRICS: Mapping[str, Callable[..., float]] = _Functions()
