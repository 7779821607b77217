"""A metric and a convention registered by a test, through the public API alone, flow everywhere the
built-in ones do: validation, evaluation (the engine, the conventions), the record and the tables."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml

import metrics.class_maps as class_maps
from bench.errors import BenchError
from bench.evaluate import evaluate
from bench.validate import validate_config
from metrics import class_metrics, column_order, label, mad_members, register_metric, resolve_metrics, unregister_metric
from metrics.conventions import (
    Conventions,
    PerClass,
    convention_names,
    legend,
    register_convention,
    unregister_convention,
)
from metrics.pixel import pixel_value
from reports.markdown import grid_section
from reports.protocol import protocol_grid
from reports.report import build_report, markdown_report
from tests.conftest import compose_cfg
from tests.test_evaluate import _Blur, _cfg, _class_a_by_hand, _Classes
from tests.test_metrics import blobs, noisy_maps
from tests.test_reports import write_run

NAME, CONVENTION = "pixel_clean_recall", "strict"
LABEL = "pixel clean recall"


class CleanRecall:
    """The share of anomalous pixels scoring above every normal pixel (a ranked-pass reducer)."""

    def __init__(self, counts):
        self.counts, self.above = counts, 0

    def update(self, chunk) -> None:
        self.above = self.above + (chunk.below == self.counts.n_neg).sum()

    def result(self) -> float:
        return int(self.above) / self.counts.n_pos


def by_hand(masks, maps) -> float:
    return float((maps[masks] > maps[~masks].max()).mean()) if masks.any() else math.nan


@pytest.fixture
def scratch():
    @register_metric(NAME, level="pixel", label=LABEL, order=50, mad=False,
                     definition="anomalous pixels above every normal pixel", reducer=CleanRecall)
    def pixel_clean_recall(masks, maps) -> float:
        return pixel_value(NAME, masks, maps)

    @register_convention(CONVENTION, order=50, legend="clean recall with ties counted as found")
    class Strict(PerClass):
        def values(self, labels, scores, masks, maps) -> dict[str, float]:
            found = float((maps[masks] >= maps[~masks].max()).mean()) if masks.any() else math.nan
            return {NAME: found}

    yield pixel_clean_recall
    unregister_metric(NAME)
    unregister_convention(CONVENTION)


def test_validation_knows_them_only_while_registered(scratch):
    overrides = ["profile=smoke", f"eval.metrics=[image_auroc,{NAME}]", f"eval.conventions=[{CONVENTION}]"]
    validate_config(compose_cfg(overrides))
    assert NAME in resolve_metrics("all") and CONVENTION in convention_names()
    unregister_metric(NAME)
    with pytest.raises(BenchError, match=f"unknown metric '{NAME}'; valid names: all, image_auroc"):
        validate_config(compose_cfg(overrides))
    register_metric(NAME, level="pixel", label=LABEL, order=50, mad=False, definition="-",
                    reducer=CleanRecall)(scratch)
    unregister_convention(CONVENTION)
    with pytest.raises(BenchError, match=f"eval.conventions: unknown '{CONVENTION}'; choose among official"):
        validate_config(compose_cfg(overrides))
    register_convention(CONVENTION, order=50, legend="-")(PerClass)


def test_the_engine_computes_it_in_memory_and_in_small_chunks(scratch, monkeypatch):
    rng = np.random.default_rng(4)
    masks = blobs(rng, 6, 20, 20)
    maps = noisy_maps(rng, masks, signal=2.5, quantize=4)
    want = by_hand(masks, maps)
    assert 0.0 < want < 1.0
    assert scratch(masks, maps) == want
    assert class_metrics([NAME, "pixel_auroc"], None, None, masks, maps)[NAME] == want
    monkeypatch.setattr(class_maps, "_CHUNK", 7)
    assert class_maps.ClassMaps.from_arrays(masks, maps).pixel_metrics([NAME])[NAME] == want


def test_evaluation_records_both_and_the_tables_label_them(scratch, tmp_path):
    data = _Classes()
    result, _ = evaluate(_Blur(), data, _cfg(metrics=["image_auroc", NAME], conventions=[CONVENTION]),
                         device="cpu")
    _, _, _, masks, maps = _class_a_by_hand(data)
    assert result["per_class"]["a"][NAME] == pytest.approx(by_hand(masks, maps), abs=1e-12)
    assert result["per_class"]["b"][NAME] is None and "no anomalous pixel" in result["undefined"]["b"][NAME]
    assert list(result["conventions"]) == [CONVENTION] and NAME in result["conventions"][CONVENTION]["mean"]
    # a table of the run: its column and the per-class table's carry the registry's label, after the seven
    run = write_run(tmp_path / "runs", "r1", experiment=None, det=0.5, loc=0.5)
    record = json.loads((run / "metrics.json").read_text())
    record["metrics"] = result
    (run / "metrics.json").write_text(json.dumps(record))
    text = markdown_report(build_report([tmp_path / "runs"]))
    assert f"| {LABEL} |" in text and "| image AUROC |" in text
    assert column_order().index(NAME) == column_order().index("mad") - 1 and NAME not in mad_members()
    # the protocol table: the convention's row, the metric's column, the convention's legend
    decl = tmp_path / "table.yaml"
    decl.write_text(yaml.safe_dump({"hydra": {"sweeper": {"table": {"protocol": {
        "conventions": [CONVENTION], "rules": ["last"], "metrics": [NAME], "key": "pixel_auroc"}}}}}))
    runs = pd.DataFrame([{"run_dir": str(run), "seed": 1}])
    table = SimpleNamespace(spec=SimpleNamespace(path=decl, title="Scratch", key="X"),
                            rows=[SimpleNamespace(runs=runs)])
    grid = protocol_grid(table)
    assert grid.columns == ["convention", "selection", LABEL] and [r[0] for r in grid.rows] == ["ours", CONVENTION]
    assert legend(CONVENTION) in grid.notes and label(NAME) == LABEL
    assert f"{CONVENTION}: clean recall with ties counted as found" in grid_section(grid)


def test_unknown_names_never_fall_through():
    with pytest.raises(ValueError, match="unknown metric 'pixel_iou'"):
        class_metrics(["pixel_iou"], None, None, np.zeros((1, 2, 2), bool), np.zeros((1, 2, 2)))
    with pytest.raises(ValueError, match="eval.conventions: unknown 'anomaly'; choose among official, ader"):
        Conventions(["anomaly"])
    with pytest.raises(ValueError, match="registered already"):
        register_metric("pixel_auroc", level="pixel", label="x", order=0, mad=False, definition="x",
                        reducer=CleanRecall)
