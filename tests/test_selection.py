"""Selection rules on a hand-made test curve (reports/selection.py)."""

from __future__ import annotations

import math

import pytest

from reports.selection import (
    curve_series,
    inflation,
    record_selection,
    select,
    select_ader,
    select_last,
    select_official,
)

# epoch: (image_auroc, pixel_auroc, pixel_aupro). Pixel AUROC peaks at epochs 20 and 30 (a tie),
# image AUROC at 10, AUPRO at 40 (the last epoch); the last epoch is worse than the best in pixel AUROC.
CURVE = [
    {"epoch": 30, "mean": {"image_auroc": 0.80, "pixel_auroc": 0.95, "pixel_aupro": 0.70},
     "conventions": {"official": {"image_auroc": 0.81, "pixel_auroc": 0.90}}},
    {"epoch": 10, "mean": {"image_auroc": 0.90, "pixel_auroc": 0.91, "pixel_aupro": 0.60},
     "conventions": {"official": {"image_auroc": 0.91, "pixel_auroc": 0.97}}},
    {"epoch": 20, "mean": {"image_auroc": 0.85, "pixel_auroc": 0.95, "pixel_aupro": 0.65},
     "conventions": {"official": {"image_auroc": 0.86, "pixel_auroc": 0.92}}},
    {"epoch": 40, "mean": {"image_auroc": 0.82, "pixel_auroc": 0.93, "pixel_aupro": 0.75},
     "conventions": {"official": {"image_auroc": 0.83, "pixel_auroc": 0.93}}},
]


def test_official_takes_every_metric_at_the_best_key_epoch_ties_to_the_later():
    s = select_official(curve_series(CURVE))
    assert s.values == {"image_auroc": 0.80, "pixel_auroc": 0.95, "pixel_aupro": 0.70}  # epoch 30, not 20
    assert set(s.epochs.values()) == {30}
    by_image = select_official(curve_series(CURVE), key="image_auroc")
    assert by_image.epochs["pixel_auroc"] == 10 and by_image.values["pixel_auroc"] == 0.91


def test_ader_takes_each_metrics_own_maximum_first_epoch_on_ties():
    s = select_ader(curve_series(CURVE))
    assert s.values == {"image_auroc": 0.90, "pixel_auroc": 0.95, "pixel_aupro": 0.75}
    assert s.epochs == {"image_auroc": 10, "pixel_auroc": 20, "pixel_aupro": 40}


def test_last_and_inflation_over_it():
    series = curve_series(CURVE)
    last = select_last(series)
    assert last.values["pixel_auroc"] == 0.93 and last.epochs["pixel_auroc"] == 40
    up = inflation(select("official", series), last)
    assert up["pixel_auroc"] == pytest.approx(0.02)
    assert up["image_auroc"] == pytest.approx(-0.02)  # the official pick can lower another metric
    assert up["pixel_aupro"] == pytest.approx(-0.05)
    ader_up = inflation(select("ader", series), last)
    assert all(v >= 0 for v in ader_up.values())  # a maximum over a curve that ends at the last epoch
    assert ader_up["image_auroc"] == pytest.approx(0.08)


def test_a_convention_is_selected_on_its_own_key():
    s = select_official(curve_series(CURVE, "official"))
    assert s.epochs["image_auroc"] == 10 and s.values == {"image_auroc": 0.91, "pixel_auroc": 0.97}


def test_nan_never_wins_and_no_finite_key_selects_nothing():
    series = [(1, {"pixel_auroc": math.nan, "image_auroc": 0.99}), (2, {"pixel_auroc": 0.5, "image_auroc": 0.6})]
    assert select_official(series).epochs["image_auroc"] == 2
    assert select_ader(series).values == {"pixel_auroc": 0.5, "image_auroc": 0.99}
    assert select_official([(1, {"pixel_auroc": math.nan})]).values == {}
    with pytest.raises(ValueError, match="unknown selection rule"):
        select("best", series)


def test_record_selection_needs_a_curve_except_for_last():
    record = {"metrics": {"mean": {"pixel_auroc": 0.9}, "conventions": {"dinomaly": {"mean": {"pixel_auroc": 0.8}}}},
              "timing": {"epochs_run": 5}}
    assert record_selection(record, "official") is None
    assert record_selection(record, "last").values == {"pixel_auroc": 0.9}
    assert record_selection(record, "last", "dinomaly").values == {"pixel_auroc": 0.8}
    record["curve"] = {"every": 10, "points": CURVE}
    assert record_selection(record, "ader").values["image_auroc"] == 0.90
