"""Significance in the tables, data-aware rows and the precision in
the provenance: pure functions checked against scipy, tables from hand-made records with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from reports.aggregate import build_tables, summary_frame
from reports.collect import collect
from reports.grid import main_grid
from reports.latex import grid_latex
from reports.markdown import grid_markdown
from reports.paper import load_paper
from reports.stats import NOT_SIGNIFICANT, NOT_TESTABLE, SIGNIFICANT, paired_t_test, t_interval
from tests.test_reports import write_run


def test_t_interval_is_scipys():
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 10):
        xs = rng.normal(95, 1.5, n)
        want = stats.t.interval(0.95, n - 1, loc=xs.mean(), scale=stats.sem(xs))
        assert t_interval(xs) == pytest.approx(want, rel=1e-12)
    assert t_interval([96.0]) is None and t_interval([]) is None


def test_paired_t_test_is_scipys_ttest_rel_over_shared_seeds():
    rng = np.random.default_rng(1)
    for n in (2, 3, 5, 8):
        a, b = rng.normal(95, 1, n), rng.normal(95.5, 1, n)
        got = paired_t_test(dict(enumerate(a)), {**dict(enumerate(b)), 99: 0.0})  # seed 99: b only, unused
        want = stats.ttest_rel(a, b)
        assert got.n == n and got.t == pytest.approx(want.statistic) and got.p == pytest.approx(want.pvalue)
        assert got.verdict == (SIGNIFICANT if want.pvalue < 0.05 else NOT_SIGNIFICANT)


def test_paired_t_test_known_cases():
    # textbook: differences 1, 2, 3 -> t = 2 / (1 / sqrt 3) = 3.464, p = 0.0742 (2 df): not significant
    res = paired_t_test({1: 11, 2: 12, 3: 13}, {1: 10, 2: 10, 3: 10})
    assert res.t == pytest.approx(2 * 3**0.5) and res.p == pytest.approx(0.07417, abs=1e-4)
    assert res.verdict == NOT_SIGNIFICANT
    assert paired_t_test({1: 5.0}, {1: 4.0, 2: 3.0}).verdict == NOT_TESTABLE  # one shared seed
    assert paired_t_test({1: 5.0, 2: 6.0}, {3: 5.0, 4: 6.0}).n == 0  # no shared seed
    same = paired_t_test({1: 5.0, 2: 6.0}, {1: 5.0, 2: 6.0})
    assert (same.p, same.verdict) == (1.0, NOT_SIGNIFICANT)
    shifted = paired_t_test({1: 6.0, 2: 7.0}, {1: 5.0, 2: 6.0})  # the same +1 on every seed: no noise
    assert (shifted.p, shifted.verdict) == (0.0, SIGNIFICANT)


def _s4(root, loss, seeds_det, **extra):
    for seed, det in seeds_det.items():
        write_run(root, f"{loss}/{extra.get('tag', '')}seed={seed}", experiment="loss", seed=seed, det=det,
                  loc=0.9, n_seeds=5, loss__name=loss, **{k: v for k, v in extra.items() if k != "tag"})


def test_rows_are_marked_against_the_default_row_in_markdown_and_latex(tmp_path):
    mse = {1: 0.950, 2: 0.960, 3: 0.955, 4: 0.962, 5: 0.951}
    _s4(tmp_path, "mse", mse)  # S4's default row
    _s4(tmp_path, "norm_mse", {s: v + 0.02 + 0.001 * (s % 2) for s, v in mse.items()})  # clearly better
    noise = {1: 0.004, 2: -0.006, 3: 0.005, 4: -0.003, 5: 0.001}
    _s4(tmp_path, "cosine", {s: v + noise[s] for s, v in mse.items()})  # seed noise only
    (table,) = build_tables(collect([tmp_path]).frame, load_paper())
    grid = main_grid(table)
    cells = {r[0]: r[grid.columns.index("Det. ours")] for r in grid.rows}
    assert not cells["MSE"].endswith(("†", "‡"))  # the reference itself
    assert not cells["Norm MSE"].endswith(("†", "‡"))  # significant: no mark
    assert cells["Cosine"].endswith("†")
    p = stats.ttest_rel([mse[s] + noise[s] for s in mse], list(mse.values())).pvalue
    summary = summary_frame([table]).set_index(["row", "metric"])
    assert summary.loc[("cosine", "image_auroc"), "p_vs_default"] == pytest.approx(p)
    assert summary.loc[("cosine", "image_auroc"), "vs_default"] == NOT_SIGNIFICANT
    assert summary.loc[("cosine", "image_auroc"), "n_paired"] == 5
    legend = "Each row is compared with the default row (MSE) by a paired t-test"
    assert legend in grid.caption and "† = the difference is not significant at 5%" in grid.caption
    tex = grid_latex(grid)
    assert "$^\\dagger$" in tex and "paired t-test" in tex
    assert "†" in grid_markdown(grid)


def test_a_row_sharing_one_seed_with_the_default_is_not_testable(tmp_path):
    _s4(tmp_path, "mse", {1: 0.95, 2: 0.96})
    _s4(tmp_path, "cosine", {2: 0.90, 7: 0.91})
    (table,) = build_tables(collect([tmp_path]).frame, load_paper())
    grid = main_grid(table)
    cosine = next(r for r in grid.rows if r[0] == "Cosine")
    assert cosine[grid.columns.index("Det. ours")].endswith("‡")
    assert "‡ = not testable (fewer than 2 shared seeds)" in grid.caption
    assert "$^\\ddagger$" in grid_latex(grid)


def test_runs_on_different_data_are_different_rows_and_one_seed_shows_no_spread(tmp_path):
    for seed, root in ((1, "/mvtec/a"), (2, "/mvtec/b")):
        _s4(tmp_path, "mse", {seed: 0.8 + 0.1 * seed}, tag=f"{seed}", data__name="mvtec", data__root=root)
    (table,) = build_tables(collect([tmp_path]).frame, load_paper())
    rows = [r for r in table.rows if r.spec.id == "mse"]
    assert sorted(r.variant for r in rows) == ["data.root=/mvtec/a", "data.root=/mvtec/b"]
    text = grid_markdown(main_grid(table))
    assert "100.0 (n=1)" in text and "± 0.0" not in text


def test_generated_data_is_one_row_wherever_it_was_written(tmp_path):
    for seed, root in ((1, "/home/a/data"), (2, "/scratch/b/data")):
        _s4(tmp_path, "mse", {seed: 0.95}, tag=f"{seed}", data__root=root, data__generator__seed=0)
    (table,) = build_tables(collect([tmp_path]).frame, load_paper())
    (row,) = [r for r in table.rows if r.spec.id == "mse"]
    assert row.n_done == 2 and row.variant == ""


def test_precision_is_in_the_provenance(tmp_path):
    _s4(tmp_path / "new", "mse", {1: 0.95, 2: 0.96}, trainer__precision="bf16")
    (table,) = build_tables(collect([tmp_path / "new"]).frame, load_paper())
    assert "precision: bf16;" in main_grid(table).caption
    _s4(tmp_path / "old", "mse", {1: 0.95})
    (table,) = build_tables(collect([tmp_path / "old"]).frame, load_paper())
    assert "precision: not recorded;" in main_grid(table).caption
    _s4(tmp_path / "scores", "mse", {1: 0.95}, trainer__precision="bf16", arch__fp32_scores=True)
    (table,) = build_tables(collect([tmp_path / "scores"]).frame, load_paper())
    assert "precision: bf16 (fp32 scores);" in main_grid(table).caption


def test_runs_on_other_categories_are_other_rows(tmp_path):
    _s4(tmp_path, "mse", {1: 0.9}, tag="a", data__categories=["bottle"])
    _s4(tmp_path, "mse", {2: 0.8}, tag="b", data__categories=["grid"])
    (table,) = build_tables(collect([tmp_path]).frame, load_paper())
    assert sorted(r.variant for r in table.rows if r.spec.id == "mse") == [
        "data.categories=[bottle]", "data.categories=[grid]"]
