"""The record contract (``record``): one list of neutral keys that the job, the reports and the
run-dir names agree on, and records checked on reading."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pandas as pd
import pytest
from omegaconf import OmegaConf

from bench import checkpoint
from bench.errors import BenchError
from record import (
    NEUTRAL,
    PURPOSES,
    RECORD,
    SCHEMA_VERSION,
    RecordError,
    config_diff,
    flatten,
    is_neutral,
    neutral_for,
    parse_record,
)
from reports.collect import comparable_columns, record_row, records_frame, swept_of
from tests.conftest import CONF

# a record as the release before the contract wrote it (no schema, no choices), trimmed
RELEASED = json.loads("""{"status": "completed", "task": "fit", "experiment": "ablation",
 "overrides": ["decoder.design=query1", "model.nma=true", "seed=1", "+experiment=ablation", "profile=smoke"],
 "seed": 1, "config": {"seed": 1, "task": "fit", "n_seeds": 5, "trainer": {"epochs": 2, "ckpt_every": 1,
 "compile": false, "device": "auto"}, "cache": {"features": true, "dtype": "float16", "disk": true}},
 "metrics": {"mean": {"image_auroc": 0.47000000000000003, "pixel_auroc": 0.7478187145006475},
 "per_class": {"brick": {"image_auroc": 0.4, "pixel_auroc": 0.6402432491621034},
 "coffee": {"image_auroc": 0.0, "pixel_auroc": NaN}}},
 "complexity": {"learnable_params": 34592, "reconstruction_params": 34592, "backbone_params": 700768,
 "gflops": 0.0409, "image_size": 64, "flops_counted": "truncated backbone + reconstruction + anomaly map"},
 "timing": {"fit_s": 0.091, "epochs_run": 2}, "env": {"git_sha": "77c854a", "git_dirty": false},
 "data": {"train_images": 60}, "cache": {"used": true, "hit": true, "key": "3eebcc557c7c791ee217"}}""")


def test_exclude_keys_of_run_dir_names_are_the_keys_tagged_rundir():
    exclude = OmegaConf.load(f"{CONF}/config.yaml").hydra.job.config.override_dirname.exclude_keys
    assert sorted(exclude) == sorted(neutral_for("rundir"))


def test_every_tag_is_a_purpose_and_the_contract_is_torch_free():
    assert all(tags and tags <= set(PURPOSES) for tags in NEUTRAL.values())
    code = "import sys, record; sys.exit(any(m in sys.modules for m in ('torch', 'pandas')))"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    assert RECORD == "metrics.json" and SCHEMA_VERSION >= 2


def test_cache_dtype_is_compared_everywhere_and_ckpt_every_nowhere():
    """cache.dtype moves AUROCs (conf/cache/default.yaml): resume refused it while reports averaged across it;
    trainer.ckpt_every moves nothing: resume accepted it while reports split rows on it."""
    old = {"cache": {"dtype": "float16"}, "trainer": {"ckpt_every": 10}}
    new = {"cache": {"dtype": "bfloat16"}, "trainer": {"ckpt_every": 1}}
    for purpose in ("resume", "skip", "average"):
        assert config_diff(old, new, purpose) == ["cache.dtype"]
    rows = [record_row({**RELEASED, "config": config}, f"/r/{i}") for i, config in enumerate([old, new])]
    columns = comparable_columns(records_frame(rows))
    assert "config.cache.dtype" in columns and "config.trainer.ckpt_every" not in columns
    assert swept_of(["trainer.ckpt_every=5", "cache.dtype=bfloat16"]) == "cache.dtype=bfloat16"


def test_compile_and_device_change_numbers_so_a_resume_across_them_is_refused():
    saved = {"trainer": {"compile": False, "device": "auto", "num_workers": 0}}
    state = {"config": saved, "model": {}}
    checkpoint.check_resume(state, {"trainer": {**saved["trainer"], "num_workers": 2}}, "last.ckpt")
    for key, value in (("compile", True), ("device", "cpu")):
        with pytest.raises(BenchError, match=f"trainer.{key}"):
            checkpoint.check_resume(state, {"trainer": {**saved["trainer"], key: value}}, "last.ckpt")
        assert not is_neutral(f"trainer.{key}", "average")


def test_neutral_keys_cover_what_they_name_and_nothing_else():
    assert is_neutral("config.paths.data_root", "average") and is_neutral("+hydra.launcher.qos", "rundir")
    assert is_neutral("eval.metrics", "resume") and not is_neutral("eval.metrics", "skip")
    assert not is_neutral("evaluation", "resume") and not is_neutral("seed", "resume")
    assert is_neutral("seed", "average")  # the replicate axis


def test_flatten_makes_lists_hashable_and_keeps_empty_nodes():
    flat = flatten({"a": {"b": [1, [2, 3]], "c": {}}, "d": [{"e": 1}]}, "config")
    assert flat == {"config.a.b": (1, (2, 3)), "config.a.c": None, "config.d": ('{"e": 1}',)}


def test_a_record_of_the_release_before_the_contract_parses():
    record = parse_record(copy.deepcopy(RELEASED))
    assert record.schema == 1 and record.choices == {} and record.seed == 1 and record.n_seeds == 5
    assert record.metrics.mean["image_auroc"] == pytest.approx(0.47)
    assert record.metrics.per_class["coffee"]["pixel_auroc"] is None  # NaN: a class without defective pixels
    assert record.complexity["gflops"] == 0.0409
    written = parse_record({**RELEASED, "schema": SCHEMA_VERSION, "choices": {"model": "uniad", "loss": "mse"}})
    assert written.schema == SCHEMA_VERSION and written.choices["model"] == "uniad"


def _mutated(path: str, value):
    raw = copy.deepcopy(RELEASED)
    *parents, leaf = path.split(".")
    node = raw
    for key in parents:
        node = node[key]
    node[leaf] = value
    return raw


@pytest.mark.parametrize(("path", "value", "reason"), [
    ("metrics.mean.image_auroc", 1e308, r"metrics.mean.image_auroc: .*in \[0, 1\]"),
    ("metrics.mean.image_auroc", float("-inf"), "metrics.mean.image_auroc"),
    ("metrics.mean.image_auroc", "0.93", "not str"),
    ("metrics.mean.image_auroc", True, "not bool"),
    ("metrics.mean.pixel_auroc", [0.5], "not list"),
    ("metrics.per_class.brick.image_auroc", {"a": 1}, "metrics.per_class.brick.image_auroc: .*not dict"),
    ("metrics.per_class", [0.5, 0.6], "metrics.per_class: must be a mapping"),
    ("metrics.mean", [0.5], "metrics.mean: must be a mapping"),
    ("seed", 10**30, "seed: .*64-bit"),
    ("seed", "1", "seed: must be an integer"),
    ("complexity.gflops", "6.4", "complexity.gflops: must be a finite number"),
    ("complexity.learnable_params", -3, "complexity.learnable_params"),
    ("status", "done", "status: .*none of"),
    ("schema", SCHEMA_VERSION + 1, "schema"),
    ("config", [1, 2], "config: must be a mapping"),
    ("overrides", "seed=1", "overrides"),
    ("curve", [0.5], "curve: must be a mapping"),
    ("curve", {"every": 1, "points": [[1, 0.5]]}, r"curve.points\[0\]: a curve point must be a mapping"),
    ("curve", {"every": 1, "points": [{"mean": {"image_auroc": 0.5}}]}, r"curve.points\[0\].epoch"),
    ("curve", {"every": 1, "points": [{"epoch": 1, "mean": {"image_auroc": 5.0}}]},
     r"curve.points\[0\].mean.image_auroc: .*in \[0, 1\]"),
    ("curve", {"every": 1, "points": [{"epoch": 1, "mean": {"image_auroc": float("inf")}}]}, "curve.points"),
    ("curve", {"every": 1, "points": [{"epoch": 1, "mean": {}, "conventions": {"ader": {"pixel_auroc": -1}}}]},
     r"curve.points\[0\].conventions.ader.pixel_auroc"),
    ("metrics.conventions", {"ader": {"mean": {"pixel_auroc": 2.0}}}, "metrics.conventions.ader.mean.pixel_auroc"),
])
def test_a_malformed_record_is_refused_in_one_line_naming_the_field(path, value, reason):
    with pytest.raises(RecordError, match=reason) as error:
        parse_record(_mutated(path, value))
    assert "\n" not in str(error.value)


def test_not_a_mapping_is_refused():
    with pytest.raises(RecordError, match="not a JSON object but list"):
        parse_record([RELEASED])


def test_the_contract_frame_still_reads_released_records():
    frame = records_frame([record_row(RELEASED, "/r/1")])
    assert isinstance(frame, pd.DataFrame) and frame.loc[0, "metric.image_auroc"] == pytest.approx(0.47)


def test_a_curve_reads_typed_and_nan_is_not_computable():
    curve = {"every": 1, "eval_s_per_pass": 0.5, "points": [
        {"epoch": 1, "mean": {"image_auroc": 0.5, "pixel_auroc": float("nan")}, "eval_s": 0.4},
        {"epoch": 2, "mean": {"image_auroc": 0.75}, "conventions": {"ader": {"image_auroc": 0.7}}}]}
    record = parse_record({**RELEASED, "curve": curve})
    assert [p.epoch for p in record.curve.points] == [1, 2] and record.curve.every == 1
    assert record.curve.points[0].mean["pixel_auroc"] is None and record.curve.points[1].conventions["ader"]
    # a convention's binned areas may leave [0, 1] by a rounding error (ADer's AUPRO of a class: -7.9e-17)
    rounding = {"ader": {"mean": {"pixel_aupro": 0.5}, "per_class": {"logo": {"pixel_aupro": -7.9e-17}}}}
    assert parse_record(_mutated("metrics.conventions", rounding)).metrics.conventions["ader"]["per_class"]


def test_a_deeply_nested_record_is_refused_with_a_reason_not_a_recursion_error(tmp_path):
    from record import load_record, read_record_file

    deep = tmp_path / "metrics.json"
    deep.write_text('{"status": "completed", "config": ' + "[" * 10000 + "]" * 10000 + "}")
    with pytest.raises(RecordError, match="nested deeper than"):
        read_record_file(deep)
    with pytest.raises(ValueError, match="nested deeper than"):
        load_record(deep)
    nested: dict = {}
    node = nested
    for _ in range(200):  # parses as JSON, still deeper than any record
        node["a"] = {}
        node = node["a"]
    with pytest.raises(RecordError, match="nested deeper than"):
        parse_record({**RELEASED, "config": nested})
