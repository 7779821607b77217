"""Tables declared once: the sweeper's expansion, the declarations' checks, and the
example table (conf/experiment/neighbor.yaml) rendered from hand-made records with no Python of its own."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hydra.errors import HydraException

from hydra_plugins.uniad_bench_sweeper import expand, table_rows
from reports.aggregate import build_tables
from reports.declaration import parse_table, specs_by_experiment, table_specs
from reports.grid import main_grid
from reports.paper import load_paper

TABLE = {
    "key": "T",
    "rows": [
        {"id": "a", "overrides": ["loss=mse"]},
        {"id": "b", "overrides": ["loss=cosine"]},
        {"id": "paper", "paper": {"image_auroc": 90.0}},
    ],
}


def test_rows_times_combinations_rows_outermost():
    combos = [["+experiment=x", "seed=1"], ["+experiment=x", "seed=2"]]
    jobs = expand(table_rows(TABLE), combos)
    assert jobs == [
        ["loss=mse", "+experiment=x", "seed=1"],
        ["loss=mse", "+experiment=x", "seed=2"],
        ["loss=cosine", "+experiment=x", "seed=1"],
        ["loss=cosine", "+experiment=x", "seed=2"],
    ]


def test_select_runs_some_rows_and_names_the_rows_on_a_typo():
    assert table_rows(TABLE, select=["b"]) == [("b", ["loss=cosine"])]
    with pytest.raises(HydraException, match=r"no row c in table T; its rows are a, b"):
        table_rows(TABLE, select=["c"])


def test_a_command_line_override_of_a_row_key_is_refused():
    with pytest.raises(HydraException, match=r"loss is set by the table's rows"):
        expand(table_rows(TABLE), [["loss=mse"]])


def _experiment(tmp_path: Path, table: str) -> Path:
    path = tmp_path / "t.yaml"
    body = textwrap.indent(textwrap.dedent(table), " " * 6)
    path.write_text(f"experiment: t\nn_seeds: 2\nhydra:\n  sweeper:\n    params:\n      seed: 1,2\n    table:\n{body}")
    return path


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("key: T\ntitle: t\ncolumns: [a, b]\nmetrics: [image_auroc]\nrows:\n"
         "  - {id: x, label: X, overrides: [loss=mse]}\n",
         r"row x has 1 label cell\(s\) for 2 column"),
        ("key: T\ntitle: t\ncolumns: [a]\nmetrics: [image_auroc]\ndefault: z\nrows:\n"
         "  - {id: x, overrides: [loss=mse]}\n",
         r"default: z is not the id of a row"),
        ("key: T\ntitle: t\ncolumns: [a]\nmetrics: [image_auroc]\nrows:\n  - {id: x, overrides: [loss=mse]}\n"
         "  - {id: y, overrides: [model.nma=true]}\n", r"the rows share no overridden key"),
        ("key: T\ntitle: t\ncolumns: [a]\nmetrics: [image_auroc]\nrows:\n  - {id: x, overrides: [loss=nope]}\n",
         r"row override loss=nope: no conf/loss/nope.yaml"),
        ("key: T\ntitle: t\ncolumns: [a]\nmetrics: [image_auroc]\nrows:\n  - {id: x, overrides: [loss=mse]}\n"
         "  - {id: y, overrides: [loss=mse, model.nma=true]}\n", r"two rows have the same values of loss"),
        ("key: T\ntitle: t\ncolumns: [a]\nmetrics: [image_auroc]\nrows:\n  - {id: x, overrides: [loss=mse],"
         " paper: {pixel_auroc: 1}}\n", r"paper numbers for \['pixel_auroc'\]"),
    ],
)
def test_a_malformed_declaration_is_a_one_line_error(tmp_path, table, message):
    with pytest.raises(ValueError, match=message):
        parse_table(_experiment(tmp_path, table))


def test_every_declared_table_has_a_default_row_and_known_metrics():
    decls = table_specs()
    paper = ["S2", "S3", "S4", "S5", "S6", "S7", "C.1", "C.4"]
    assert [d.key for d in decls if d.key in paper] == paper  # report order
    defaults = {d.key: d.default_row for d in decls}
    assert defaults["S2"] == "9" and defaults["S3"] == "a+nma+fj" and defaults["S4"] == "mse"
    assert defaults["S5"] == "frozen" and defaults["S6"] == "efficientnet_b4" and defaults["C.1"] == "uniad"
    for name, layout in specs_by_experiment().items():
        assert layout.default_row is None or layout.default_row in {r.id for r in layout.rows}, name


def _write(root: Path, rel: str, seed: int, size: list[int], det: float, loc: float) -> None:
    config = {
        "task": "fit", "seed": seed, "experiment": "neighbor", "n_seeds": 5, "profile_name": "demo",
        "data": {"name": "synthetic", "image_size": 224}, "backbone": {"name": "efficientnet_lite0"},
        "model": {"name": "uniad", "nma": True, "fj": True, "neighbor_size": size}, "loss": {"name": "mse"},
        "decoder": {"design": "lqd_a"}, "trainer": {"epochs": 40},
    }
    record = {"status": "completed", "task": "fit", "experiment": "neighbor", "seed": seed,
              "overrides": [f"seed={seed}"], "config": config,
              "metrics": {"mean": {"image_auroc": det, "pixel_auroc": loc}, "per_class": {}}}
    (root / rel).mkdir(parents=True)
    (root / rel / "metrics.json").write_text(json.dumps(record))


def test_the_example_table_renders_from_its_yaml_alone(tmp_path):
    """conf/experiment/neighbor.yaml is the only file of this table: rows, order, labels, no paper."""
    from reports.collect import collect

    for k, size in enumerate((3, 5, 7, 9)):
        for seed in (1, 2):
            _write(tmp_path, f"n{size}/seed={seed}", seed, [size, size], 0.80 + 0.02 * k + 0.001 * seed, 0.9)
    _write(tmp_path, "n11/seed=1", 1, [11, 11], 0.5, 0.5)  # not a declared row: a row of its own
    frame = collect([tmp_path]).frame
    (table,) = build_tables(frame, load_paper())
    assert table.key == "NMA-size" and not table.spec.has_paper
    grid = main_grid(table)
    assert grid.columns[:3] == ["neighborhood", "Det.", "Loc."]
    assert [r[0] for r in grid.rows] == ["3x3", "5x5", "7x7", "9x9", "[11,11]"]
    assert grid.rows[2][1].startswith("84.2 ± 0.1")  # 7x7: mean of 84.1 and 84.2
    assert "paper" not in " ".join(grid.columns)
    assert not load_paper().query("table == 'NMA-size'").shape[0]


def test_layout_of_a_declaration_matches_rows_on_config_values():
    layout = next(d for d in table_specs() if d.key == "C.4")
    assert layout.key_columns == ("config.data.normal_classes",)
    assert layout.rows[0].key == ((0, 1, 2, 3, 4),) and layout.mean_row


def test_a_row_may_carry_settings_of_its_own(tmp_path):
    """E.g. a method row with its own knobs: rows are told apart on the keys they all set."""
    decl = parse_table(_experiment(tmp_path, """\
        key: T
        title: t
        columns: [model]
        metrics: [image_auroc]
        default: uniad
        rows:
          - {id: uniad, overrides: [model=uniad]}
          - {id: mlp, overrides: [model=mlp, model.fj=true]}
        """))
    assert decl.key_columns == ("choice.model",)
    assert [r.key for r in decl.rows] == [("uniad",), ("mlp",)]
    assert "config.model.fj" in decl.row_prefixes


def test_a_group_row_matches_runs_by_their_recorded_choice_and_older_records_by_name(tmp_path):
    """A row ``model=mlp`` holds the runs composed with ``conf/model/mlp.yaml``, whatever ``model.name`` says;
    a record without choices (the release before them) is matched by the value that names the option."""
    import pandas as pd

    from reports.collect import record_row

    decl = parse_table(_experiment(tmp_path, """\
        key: T
        title: t
        columns: [model]
        metrics: [image_auroc]
        rows:
          - {id: uniad, overrides: [model=uniad]}
          - {id: mlp, overrides: [model=mlp]}
        """))
    base = {"status": "completed", "task": "fit", "seed": 1, "overrides": [], "metrics": {"mean": {}, "per_class": {}}}
    chosen = {**base, "schema": 2, "choices": {"model": "mlp"}, "config": {"model": {"name": "renamed"}}}
    older = {**base, "config": {"model": {"name": "uniad"}}}
    unnamed = {**base, "schema": 2, "choices": {}, "config": {"model": {}}}
    runs = [pd.Series(record_row(r, tmp_path / str(i))) for i, r in enumerate((chosen, older, unnamed))]
    assert [decl.key_of(run) for run in runs] == [("mlp",), ("uniad",), None]
    assert decl.row_for(("patchcore",)).name == "model=patchcore"  # an undeclared option, named as overridden
