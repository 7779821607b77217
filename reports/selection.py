"""Selection rules on a run's test curve (``eval.every``): what other protocols would have reported.

Every figure but ``last`` is **selected on the test set**: the epoch (or epochs) are chosen by looking
at the test metrics themselves, so it is an optimistic estimate, shown only beside the last epoch's.

* ``last``: the last epoch (the suite's headline; it needs no curve).
* ``official``: zhiyuanyou/UniAD ``tools/train_val.py`` (``main``): every ``val_freq_epoch`` epochs the
  test set is evaluated and the checkpoint is kept when ``ret_key_metric >= best_metric``
  (``key_metric: mean_pixel_auc``, the class mean of pixel AUROC; ``best_metric`` starts at 0); every
  metric is then read at that one epoch. Ties go to the later epoch (``>=``); a nan key never wins.
* ``ader``: zhangzjn/ADer ``trainer/uniad_trainer.py`` (``UniADTrainer.test``) logs, per metric, the
  maximum over its test evaluations of the class average (``max(self.metric_recorder[...])``, the
  first epoch reaching it), so the metrics of one row can come from different epochs.

Pure functions on curves: a curve is a list of points ``{"epoch": e, "mean": {metric: value},
"conventions": {name: {metric: value}}}`` (``bench.curve``), in any order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

RULES: tuple[str, ...] = ("last", "official", "ader")
#: the official key metric ``mean_pixel_auc``: the class mean of pixel AUROC
DEFAULT_KEY = "pixel_auroc"
SELECTED_NOTE = "selected on the test set"
LEGEND = {
    "last": "the last epoch (ours; not selected)",
    "official": "the epoch with the best mean pixel AUROC among the test evaluations, ties to the later "
                "(official UniAD tools/train_val.py), every metric at that epoch; selected on the test set",
    "ader": "each metric's maximum over the test evaluations, each from its own epoch (ADer "
            "trainer/uniad_trainer.py); selected on the test set",
}

Series = list[tuple[int, dict[str, float]]]


@dataclass(frozen=True)
class Selection:
    """What a rule reports: ``values`` per metric and the epoch each was read at."""

    rule: str
    values: dict[str, float] = field(default_factory=dict)
    epochs: dict[str, int | None] = field(default_factory=dict)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def curve_series(points: Iterable[Mapping], convention: str | None = None) -> Series:
    """(epoch, metrics) of each point, by epoch; ``convention``: that convention's metrics instead of
    ours (points without it are left out)."""
    out: Series = []
    for point in points:
        values = point.get("mean") if convention is None else (point.get("conventions") or {}).get(convention)
        if values is not None:
            out.append((int(point["epoch"]), dict(values)))
    return sorted(out, key=lambda item: item[0])


def _metrics(series: Series) -> list[str]:
    names: list[str] = []
    for _, values in series:
        names.extend(n for n in values if n not in names)
    return names


def select_last(series: Series) -> Selection:
    """The last point's metrics."""
    if not series:
        return Selection("last")
    epoch, values = series[-1]
    return Selection("last", dict(values), {name: epoch for name in values})


def select_official(series: Series, key: str = DEFAULT_KEY) -> Selection:
    """Every metric at the epoch whose ``key`` is best (``>=`` over the epochs in order: the later wins a
    tie); an empty Selection when no point has a finite ``key``."""
    best, chosen = 0.0, None
    for epoch, values in series:
        value = values.get(key)
        if _finite(value) and value >= best:
            best, chosen = float(value), (epoch, values)
    if chosen is None:
        return Selection("official")
    epoch, values = chosen
    return Selection("official", dict(values), {name: epoch for name in values})


def select_ader(series: Series) -> Selection:
    """Each metric's maximum over the points (nan ignored) and the first epoch reaching it."""
    values: dict[str, float] = {}
    epochs: dict[str, int | None] = {}
    for name in _metrics(series):
        best, at = None, None
        for epoch, point in series:
            value = point.get(name)
            if _finite(value) and (best is None or value > best):
                best, at = float(value), epoch
        values[name] = best if best is not None else math.nan
        epochs[name] = at
    return Selection("ader", values, epochs)


def select(rule: str, series: Series, key: str = DEFAULT_KEY) -> Selection:
    """The selection ``rule`` (one of ``RULES``) on ``series``."""
    if rule == "last":
        return select_last(series)
    if rule == "official":
        return select_official(series, key)
    if rule == "ader":
        return select_ader(series)
    raise ValueError(f"unknown selection rule {rule!r}; choose among {', '.join(RULES)}")


def inflation(selected: Selection, last: Selection) -> dict[str, float]:
    """``selected - last`` per metric both have (nan where either is missing or nan)."""
    out = {}
    for name, value in selected.values.items():
        other = last.values.get(name)
        out[name] = float(value) - float(other) if _finite(value) and _finite(other) else math.nan
    return out


def record_selection(record: Mapping, rule: str, convention: str | None = None,
                     key: str = DEFAULT_KEY) -> Selection | None:
    """``rule`` applied to a run record's curve (``convention``: its curve of that convention, selected
    on that convention's own ``key``). ``last`` needs no curve (the record's metrics); the others give
    None for a record without one (run with ``eval.every``)."""
    curve = record.get("curve") or {}
    points = curve.get("points") if isinstance(curve, Mapping) else None
    if points:
        return select(rule, curve_series(points, convention), key)
    if rule != "last":
        return None
    metrics = record.get("metrics") or {}
    values = metrics.get("mean") if convention is None else ((metrics.get("conventions") or {})
                                                             .get(convention) or {}).get("mean")
    if values is None:
        return None
    epochs = (record.get("timing") or {}).get("epochs_run")
    return Selection("last", dict(values), {name: epochs for name in values})
