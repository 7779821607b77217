"""What reports make of records they must not trust blindly: runs on other datasets or roots, malformed
records, undefined metrics, categories named like the mean row, unreadable saved maps, dirty trees.
Every record is hand-made in tmp_path with :func:`tests.test_reports.write_run`."""

from __future__ import annotations

from reports.aggregate import build_tables
from reports.collect import collect
from reports.grid import main_grid
from reports.paper import load_paper
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
