"""The reports say what the runs are: a smoke or demo table is never "reproduced", bold marks only a value
that beats the runner-up beyond seed noise, wide tables fit the page, and evaluating one checkpoint twice
adds no seed. Records are hand-made (:func:`tests.test_reports.write_run`); no training."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from scipy import stats

from reports.aggregate import build_tables, summary_frame
from reports.collect import collect
from reports.grid import Grid, main_grid
from reports.latex import PREAMBLE, SIDEWAYS_AT, TEXT_WIDTH_PT, estimated_width, grid_latex, natural_width
from reports.markdown import grid_section
from reports.paper import load_paper
from reports.report import build_report
from reports.stats import NOT_TESTABLE, SIGNIFICANT, beats, welch_t_test
from tests.test_reports import make_runs, write_run


def _tables(root):
    return {t.key: t for t in build_tables(collect([root]).frame, load_paper())}


def _loss_runs(root, dets: dict[str, list[float]], **config) -> None:
    """Table S4 (experiment=loss): one run per loss and seed, ``dets`` the image AUROC per seed."""
    for loss, values in dets.items():
        for seed, det in enumerate(values, 1):
            write_run(root, f"loss={loss}/seed={seed}", experiment="loss", seed=seed, det=det, loc=0.96,
                      n_seeds=len(values), loss__name=loss, **config)


# --- 1. a pipeline check or a demo never says "reproduced" ---------------------------------------------------
@pytest.mark.parametrize(("profile", "data", "says", "reproduced"), [
    ("smoke", "mvtec", "Pipeline check at profile=smoke (tiny model, seconds of training): not a result; "
                       "the paper's numbers are shown for layout only.", False),
    ("demo", "synthetic", "Profile=demo (a CPU demo: compact model, minutes of training on the synthetic data), "
                          "not the paper's recipe; compare trends with the paper's numbers, not values.", False),
    ("paper", "synthetic", "Table S4 rerun at profile=paper, data=synthetic, not the paper's profile=paper, "
                           "data=mvtec", False),
    ("paper", "mvtec", "Table S4 reproduced: ", True),
])
def test_only_a_paper_profile_run_on_the_papers_data_says_reproduced(tmp_path, profile, data, says, reproduced):
    _loss_runs(tmp_path, {"mse": [0.96, 0.97], "cosine": [0.95, 0.96]}, profile_name=profile, data__name=data)
    grid = main_grid(_tables(tmp_path)["S4"])
    assert grid.caption.startswith(says)
    assert ("reproduced" in grid.caption) is reproduced
    assert ("reproduced" in grid_section(grid)) is reproduced


def test_a_smoke_table_without_paper_numbers_and_its_per_class_tables_say_what_they_are(tmp_path):
    per_class = {"bottle": {"image_auroc": 0.9, "pixel_auroc": 0.9}}
    for seed in (1, 2):
        write_run(tmp_path, f"probe/seed={seed}", experiment="probe", seed=seed, det=0.9, loc=0.9,
                  profile_name="smoke", per_class=per_class)
    report = build_report([tmp_path])
    for grid in [*report.main, *report.per_class]:
        assert grid.caption.startswith("Pipeline check at profile=smoke (tiny model, seconds of training): "
                                       "not a result.") and "reproduced" not in grid.caption


# --- 2. bold: the best only when it beats the runner-up beyond seed noise -----------------------------------
def _bold_rows(grid: Grid, column: str) -> list[str]:
    j = grid.columns.index(column)
    return sorted(grid.rows[i][0] for i, k in grid.bold if k == j)


def test_a_best_mean_within_seed_noise_of_the_runner_up_is_not_bold(tmp_path):
    # MSE 96.0 vs Cosine 95.7: per-seed differences +1.0, -0.5, +0.5 (paired p = 0.47)
    _loss_runs(tmp_path, {"mse": [0.960, 0.970, 0.950], "cosine": [0.950, 0.975, 0.945],
                          "norm_mse": [0.90, 0.91, 0.92]})
    grid = main_grid(_tables(tmp_path)["S4"])
    assert _bold_rows(grid, "Det. ours") == []
    assert _bold_rows(grid, "Det. paper") == ["Cosine"]  # 96.6: the paper's best published number stays bold
    assert "only when it beats the runner-up (the next best mean) beyond seed noise" in grid.caption
    assert "bold (paper): the paper's best published number" in grid.caption


def test_a_best_mean_beyond_seed_noise_is_bold(tmp_path):
    # MSE beats Cosine, the runner-up, on every seed by 1.0 +- 0.1 points (paired p < 0.01)
    _loss_runs(tmp_path, {"mse": [0.960, 0.962, 0.958], "cosine": [0.950, 0.951, 0.949],
                          "norm_mse": [0.90, 0.91, 0.92]})
    grid = main_grid(_tables(tmp_path)["S4"])
    assert _bold_rows(grid, "Det. ours") == ["MSE"]
    assert "\\textbf{96.0" in grid_latex(grid)


def test_one_seed_per_row_sets_nothing_in_bold(tmp_path):
    _loss_runs(tmp_path, {"mse": [0.99], "cosine": [0.50]})
    grid = main_grid(_tables(tmp_path)["S4"])
    assert _bold_rows(grid, "Det. ours") == [] and _bold_rows(grid, "Loc. ours") == []


def test_rows_without_shared_seeds_are_compared_by_welch(tmp_path):
    for seed, det in ((1, 0.960), (2, 0.961), (3, 0.962)):
        write_run(tmp_path, f"mse/{seed}", experiment="loss", seed=seed, det=det, loc=0.9, loss__name="mse")
    for seed, det in ((4, 0.940), (5, 0.941), (6, 0.942)):
        write_run(tmp_path, f"cos/{seed}", experiment="loss", seed=seed, det=det, loc=0.9, loss__name="cosine")
    assert _bold_rows(main_grid(_tables(tmp_path)["S4"]), "Det. ours") == ["MSE"]


def test_welch_t_test_is_scipys_and_beats_needs_two_seeds_a_side():
    rng = np.random.default_rng(3)
    for na, nb in ((2, 2), (3, 5), (6, 4)):
        a, b = rng.normal(95, 1, na), rng.normal(96, 2, nb)
        got, want = welch_t_test(a, b), stats.ttest_ind(a, b, equal_var=False)
        assert got.t == pytest.approx(want.statistic) and got.p == pytest.approx(want.pvalue)
    assert welch_t_test([96.0], [90.0, 91.0]).verdict == NOT_TESTABLE
    assert welch_t_test([96.0, 96.0], [90.0, 90.0]).verdict == SIGNIFICANT  # no spread at all
    assert not beats({1: 99.0}, {1: 50.0}, True)  # one seed: no noise to beat
    assert beats({1: 96.0, 2: 96.1}, {1: 95.0, 2: 95.05}, True)  # paired over the shared seeds
    assert not beats({1: 96.0, 2: 96.1}, {1: 95.0, 2: 95.05}, False)  # lower is better: the other wins


# --- 3. every table fits the page, checked without pdflatex -------------------------------------------------
def test_every_table_fits_its_page_wide_ones_with_tighter_columns(tmp_path):
    runs = make_runs(tmp_path)
    report = build_report([runs / "multirun", runs / "outputs"])
    grids = [*report.main, *report.per_class]
    assert "\\ifdim\\wd\\fitbox>\\linewidth\\resizebox{\\linewidth}{!}" in PREAMBLE  # scaled to its line
    for grid in grids:
        tex = grid_latex(grid)
        assert re.search(r"\\begin\{fitwidth\}\{[^}]+\}\n\\begin\{tabular\}", tex), grid.key
        assert "\\end{tabular}\n\\end{fitwidth}" in tex
        wide = natural_width(grid) > TEXT_WIDTH_PT
        assert ("\\setlength{\\tabcolsep}{3pt}" in tex) is wide, grid.key
        landscape = "\\begin{sideways}" in tex
        line = 678.0 if landscape else TEXT_WIDTH_PT  # \textheight on a turned page
        assert landscape is (estimated_width(grid) > SIDEWAYS_AT * TEXT_WIDTH_PT)
        assert estimated_width(grid) / line < 1.25, grid.key  # scaled by no more than a fifth
    s4 = next(g for g in grids if g.key == "S4")  # 3 metric columns x ours/paper/Δ: upright, unscaled
    assert natural_width(s4) > TEXT_WIDTH_PT >= estimated_width(s4)


def test_a_table_of_many_metric_columns_is_tightened_turned_and_scaled(tmp_path):
    columns = ["#", *(f"{m} {k}" for m in ("Det.", "Loc.", "AP", "F1", "PRO", "mAD") for k in ("ours", "paper", "Δ"))]
    row = ["1", *(["96.5 ± 0.1 [95.2, 97.8] (n=2)", "96.5", "+0.0"] * 6)]
    grid = Grid(key="wide", title="wide", columns=[*columns, "seeds"], rows=[[*row, "2/3"]] * 3)
    tex = grid_latex(grid)
    assert "\\setlength{\\tabcolsep}{3pt}" in tex and "\\begin{sideways}" in tex and "\\begin{fitwidth}" in tex


# --- 4. two evaluations of one checkpoint are one seed ------------------------------------------------------
def _eval_run(root, rel: str, ckpt: str, seed: int, det: float):
    run_dir = write_run(root, rel, experiment="probe", seed=seed, det=det, loc=0.9, task="eval",
                        overrides=["task=eval", f"ckpt={ckpt}", f"seed={seed}"])
    record = json.loads((run_dir / "metrics.json").read_text())
    record["checkpoint"] = {"path": ckpt, "epoch": 40}
    (run_dir / "metrics.json").write_text(json.dumps(record))


def test_evaluations_of_one_checkpoint_count_once_under_its_training_seed(tmp_path):
    fit = write_run(tmp_path, "fit/seed=1", experiment="probe", seed=1, det=0.90, loc=0.9,
                    overrides=["seed=1"])
    other = write_run(tmp_path, "fit/seed=2", experiment="probe", seed=2, det=0.92, loc=0.9,
                      overrides=["seed=2"])
    _eval_run(tmp_path, "eval/a", str(fit), seed=5, det=0.900)  # the run dir, and the file in it: one model
    _eval_run(tmp_path, "eval/b", str(fit / "last.ckpt"), seed=6, det=0.902)
    _eval_run(tmp_path, "eval/c", str(other) + "/", seed=7, det=0.920)
    frame = collect([tmp_path]).frame
    evals = frame[frame["task"] == "eval"]
    assert sorted(evals["seed"]) == [1, 1, 2]  # the checkpoints' training seeds, not the eval jobs'
    table = _tables(tmp_path)["exp-probe"]
    row = next(r for r in table.rows if r.name == "task=eval")  # the fit runs are the row of no override
    assert row.n_done == 2 and row.seeds == [1, 2] and row.n_seeds_done == 2
    cell = row.cells["image_auroc"]
    assert cell.n == 2 and cell.mean == pytest.approx((90.1 + 92.0) / 2)
    assert row.per_seed["image_auroc"] == pytest.approx({1: 90.1, 2: 92.0})
    summary = summary_frame([table])
    assert set(summary[(summary["row"] == row.spec.id) & (summary["metric"] == "image_auroc")]["n"]) == {2}
    assert any("2 records of one trained model" in n and f"`{fit.as_posix()}`" in n for n in table.notes)
    assert main_grid(table).rows[table.rows.index(row)][-1] == "2/3"  # seeds done / asked
