"""What reports make of records they must not trust blindly: runs on other datasets or roots, malformed
records, undefined metrics, categories named like the mean row, unreadable saved maps, dirty trees.
Every record is hand-made in tmp_path with :func:`tests.test_reports.write_run`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reports.aggregate import build_tables
from reports.collect import collect
from reports.declaration import parse_table
from reports.grid import main_grid, per_class_grids
from reports.latex import grid_latex
from reports.paper import load_paper
from reports.report import build_report, markdown_report, write_report
from tests.test_reports import write_run

GENERATOR = {"data__generator__seed": 0, "data__generator__n_train": 20}  # what old profiles wrote everywhere


def _s4(root, rel, seed, det, **config):
    return write_run(root, rel, experiment="loss", seed=seed, det=det, loc=0.9, n_seeds=2, **config)


def _table(root, key="S4"):
    return next(t for t in build_tables(collect([root]).frame, load_paper()) if t.key == key)


def test_runs_on_two_copies_of_a_real_dataset_are_two_rows_even_with_generator_keys(tmp_path):
    """Records of the old profiles carry data.generator.* in every dataset: a real root still counts."""
    for seed, root in ((1, "/data/mvtec_a"), (2, "/data/mvtec_b")):
        _s4(tmp_path, f"r{seed}", seed, 0.9, data__name="mvtec", data__root=root, **GENERATOR)
    rows = [r for r in _table(tmp_path).rows if r.spec.id == "mse"]
    assert sorted(r.variant for r in rows) == ["data.root=/data/mvtec_a", "data.root=/data/mvtec_b"]
    assert all(r.n_done == 1 for r in rows)


def test_the_rows_and_caption_name_the_datasets_of_a_mixed_table(tmp_path):
    _s4(tmp_path, "a", 1, 0.9, data__name="mvtec", data__root="/data/mvtec")
    _s4(tmp_path, "b", 1, 0.8, data__name="visa", data__root="/data/visa", loss__name="cosine")
    grid = main_grid(_table(tmp_path))
    assert grid.columns[:2] == ["loss", "dataset"] and grid.n_label_columns == 2
    datasets = {r[0]: r[1] for r in grid.rows}
    assert datasets["MSE"] == "mvtec" and datasets["Cosine"] == "visa" and datasets["Norm MSE"] == ""
    assert "Dataset: mvtec, visa;" in grid.caption
    one = tmp_path / "one"
    _s4(one, "a", 1, 0.9, data__name="mvtec", data__root="/data/mvtec")
    assert "dataset" not in main_grid(_table(one)).columns  # one dataset: named in the caption only


def _edit(run_dir, **fields):
    path = run_dir / "metrics.json"
    record = json.loads(path.read_text())
    for dotted, value in fields.items():
        node = record
        *parents, last = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    path.write_text(json.dumps(record))


def test_a_metric_undefined_for_a_class_is_marked_not_dropped(tmp_path):
    """All-zero masks: pixel AUROC of 'grid' is null with its reason; the mean is over 'bottle' alone."""
    why = "no anomalous pixel among its test images"
    for seed in (1, 2):
        run = _s4(tmp_path, f"r{seed}", seed, 0.9, per_class={
            "bottle": {"image_auroc": 0.9, "pixel_auroc": 0.95}, "grid": {"image_auroc": 0.9, "pixel_auroc": None}})
        _edit(run, metrics__undefined={"grid": {"pixel_auroc": why}}, metrics__mean__pixel_auroc=0.95)
    table = _table(tmp_path)
    grid = main_grid(table)
    mse = dict(zip(grid.columns, next(r for r in grid.rows if r[0] == "MSE"), strict=True))
    assert mse["Loc. ours"].startswith("95.0 ± 0.0") and "(n=2)§" in mse["Loc. ours"]
    assert "§" not in mse["Det. ours"]
    notes = "\n".join(grid.notes)
    assert "§ = the mean over the categories where the metric is defined" in notes
    assert f"MSE, Loc.: grid ({why})" in notes
    (per_class,) = per_class_grids(table)
    rows = {r[0]: dict(zip(per_class.columns, r, strict=True)) for r in per_class.rows}
    assert list(rows) == ["bottle", "grid", "mean"]
    assert rows["grid"]["pixel AUROC"] == "undefined§" and rows["grid"]["image AUROC"].startswith("90.0")
    assert rows["mean"]["pixel AUROC"].startswith("95.0") and rows["mean"]["pixel AUROC"].endswith("§")
    assert any("pixel AUROC is not defined for grid" in n for n in per_class.notes)
    assert "\\S{}" in grid_latex(per_class)


def test_a_category_named_mean_does_not_collide_with_the_mean_row(tmp_path):
    per_class = {"mean": {"image_auroc": 0.8}, "bottle": {"image_auroc": 0.9}}
    _s4(tmp_path, "r1", 1, 0.85, per_class=per_class)
    (grid,) = per_class_grids(_table(tmp_path))
    labels = [r[0] for r in grid.rows]
    assert labels == ["bottle", "mean", "(mean of the categories)"]
    assert grid.rows[1][1].startswith("80.0") and grid.rows[2][1].startswith("85.0")
    assert "(mean of the categories) row: the mean over categories" in grid.caption


def test_the_code_version_and_a_dirty_tree_are_in_the_provenance(tmp_path):
    for seed, dirty in ((1, False), (2, True)):
        run = _s4(tmp_path, f"r{seed}", seed, 0.9)
        _edit(run, env__git_sha="0123456789abcdef", env__git_dirty=dirty)
    caption = main_grid(_table(tmp_path)).caption
    assert "code: git 0123456789 with uncommitted changes (1 of 2 runs);" in caption
    clean = tmp_path / "clean"
    _edit(_s4(clean, "r1", 1, 0.9), env__git_sha="0123456789abcdef", env__git_dirty=False)
    assert "code: git 0123456789;" in main_grid(_table(clean)).caption


def test_an_unreadable_or_pickled_saved_map_skips_that_map_with_a_warning(tmp_path):
    run = _s4(tmp_path / "runs", "r1", 1, 0.9)
    maps = run / "maps" / "bottle"
    maps.mkdir(parents=True)
    mask = np.zeros((8, 8), dtype=np.uint8)
    np.savez(maps / "000.npz", image=np.zeros((8, 8, 3), np.float32), mask=mask, map=np.ones((8, 8), np.float32))
    np.savez(maps / "001.npz", image=np.array([{"x": 1}], dtype=object), mask=mask, map=mask)  # objects
    (maps / "002.npz").write_bytes(b"PK\x03\x04 not a zip")
    only_bad = _s4(tmp_path / "runs", "r2", 2, 0.9)
    (only_bad / "maps" / "grid").mkdir(parents=True)
    (only_bad / "maps" / "grid" / "000.npz").write_bytes(b"")
    report = build_report([tmp_path / "runs"])
    with pytest.warns(UserWarning) as caught:
        written = write_report(report, tmp_path / "out", ["png"])
    messages = "\n".join(str(w.message) for w in caught)
    assert "001.npz skipped" in messages and "002.npz skipped" in messages and "grid/000.npz skipped" in messages
    maps_figures = [p.name for p in written if p.name.startswith("maps_")]
    assert maps_figures == ["maps_r1.png"]  # r2 had no readable map: no figure, and the report went on
    assert (tmp_path / "out" / "figures" / "S4.png").is_file()


def test_a_row_id_mean_beside_a_mean_row_is_refused(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text("hydra:\n  sweeper:\n    table:\n      key: T\n      title: t\n      columns: [loss]\n"
                    "      metrics: [image_auroc]\n      mean_row: true\n      rows:\n"
                    "        - {id: mean, overrides: [loss=mse]}\n        - {id: b, overrides: [loss=cosine]}\n")
    with pytest.raises(ValueError, match=r"t.yaml: row id mean is taken by the mean row"):
        parse_table(path)


BAD_RECORDS = {  # what a probe wrote -> the field the reason must name
    "huge": ({"metrics__mean__image_auroc": 1e308}, "metrics.mean.image_auroc"),
    "minus_inf": ({"metrics__mean__pixel_auroc": float("-inf")}, "metrics.mean.pixel_auroc"),
    "list": ({"metrics__mean__image_auroc": [0.9]}, "metrics.mean.image_auroc"),
    "dict": ({"metrics__mean__image_auroc": {"v": 0.9}}, "metrics.mean.image_auroc"),
    "per_class_list": ({"metrics__per_class": [0.9]}, "metrics.per_class"),
    "seed": ({"seed": 10**30}, "seed"),
    "gflops": ({"complexity__gflops": "many"}, "complexity.gflops"),
    "string": ({"metrics__mean__image_auroc": "0.93"}, "metrics.mean.image_auroc"),
    "bool": ({"metrics__mean__image_auroc": True}, "metrics.mean.image_auroc"),
    # a curve point that is no {"epoch", "mean"} mapping, and a curve value a table would print as 500.0
    "curve_shape": ({"curve": {"every": 1, "points": [[1, 0.9]]}}, "curve.points[0]"),
    "curve_value": ({"curve": {"every": 1, "points": [{"epoch": 1, "mean": {"pixel_auroc": 5.0}}]}},
                    "curve.points[0].mean.pixel_auroc"),
}


def test_each_malformed_record_is_listed_as_unreadable_and_the_rest_renders(tmp_path):
    _s4(tmp_path, "good", 1, 0.9)
    for name, (fields, _) in BAD_RECORDS.items():
        _edit(_s4(tmp_path, name, 2, 0.8, complexity={"gflops": 1.0}), **fields)
    report = build_report([tmp_path])
    unreadable = dict(report.collection.unreadable)
    assert len(unreadable) == len(BAD_RECORDS)
    for name, (_, field) in BAD_RECORDS.items():
        reason = unreadable[(tmp_path / name / "metrics.json").as_posix()]
        assert field in reason and "\n" not in reason, (name, reason)
    assert len(report.frame) == 1  # only the good record is a run
    md = markdown_report(report)
    assert "90.0 (n=1)" in md and "93.0" not in md and "100.0" not in md
    assert f"{len(BAD_RECORDS)} unreadable" in md and "huge/metrics.json" in md


def test_a_record_nested_too_deep_is_listed_by_python_m_reports_and_the_report_goes_on(tmp_path, capsys):
    from reports.__main__ import main

    _s4(tmp_path / "runs", "good", 1, 0.9)
    deep = tmp_path / "runs" / "deep" / "metrics.json"
    deep.parent.mkdir(parents=True)
    deep.write_text('{"status": "completed", "config": ' + "[" * 10000 + "]" * 10000 + "}")
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "1 unreadable" in out and "deep/metrics.json`: nested deeper than" in out
    assert "90.0 (n=1)" in out
