"""``python -m reports``: records → DataFrame → tables S2–S7 (Markdown, LaTeX, CSV) and figures.

Every test builds run folders of records only (no training) in tmp_path with :func:`write_run`.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from reports.__main__ import main as cli_main
from reports.aggregate import aggregate, build_tables
from reports.collect import collect, failed_runs
from reports.grid import Grid, main_grid, per_class_grids
from reports.latex import grid_latex, tex_escape
from reports.markdown import grid_markdown
from reports.paper import load_paper
from reports.report import build_report, markdown_report, write_report

ROOT = Path(__file__).resolve().parent.parent

# S2 fixture: (design, nma, fj) -> {seed: (image_auroc, pixel_auroc)}; row 3 has no run at all.
S2_RUNS = {
    ("none", False, False): {1: (0.701, 0.795), 2: (0.712, 0.801), 3: (0.690, 0.788)},  # row 1: complete
    ("query1", False, False): {1: (0.880, 0.930), 2: (0.872, 0.925), 3: (0.875, 0.931)},  # row 2
    ("query1", True, True): {1: (0.960, 0.965), 2: (0.958, 0.962)},  # row 5: 2 of 3 (+1 failed)
    ("lqd_a", False, False): {1: (0.950, 0.965)},  # row 6
    ("lqd_a", True, False): {1: (0.955, 0.964), 2: (0.961, 0.966), 3: (0.958, 0.965)},  # row 7
    ("lqd_a", False, True): {1: (0.949, 0.962), 2: (0.948, 0.961), 3: (0.950, 0.963)},  # row 8
    ("lqd_a", True, True): {1: (0.966, 0.968), 2: (0.964, 0.970)},  # row 9 (seed 3 differs in epochs)
}


def _set(config: dict, dotted: str, value) -> None:
    node = config
    *parents, last = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def write_run(
    root: Path,
    rel: str,
    *,
    experiment: str | None = "ablation",
    seed: int = 1,
    det=None,
    loc=None,
    status: str = "completed",
    error: str | None = None,
    n_seeds: int | None = 3,
    task: str = "fit",
    per_class: dict | None = None,
    complexity: dict | None = None,
    overrides: list[str] | None = None,
    **config_values,
) -> Path:
    """One run folder holding a ``metrics.json`` like bench/job.py writes (config keys as a__b=value)."""
    config = {
        "task": task,
        "seed": seed,
        "experiment": experiment,
        "profile_name": "demo",
        "rerun": False,
        "paths": {"data_root": "/data", "cache_root": "/cache"},
        "data": {"name": "synthetic", "root": "/data/synthetic", "image_size": 224, "categories": None},
        "backbone": {
            "name": "efficientnet_lite0",
            "frozen": True,
            "weights": "imagenet",
            "outlayers": [1, 2, 3, 4],
        },
        "model": {"name": "uniad", "nma": True, "fj": True, "decoder": "lqd_a"},
        "decoder": {"design": "lqd_a"},
        "loss": {"name": "mse"},
        "trainer": {"epochs": 40, "device": "auto", "lr": 0.001},
        "eval": {"save_maps": 0, "pool_size": 16},
    }
    if n_seeds is not None:
        config["n_seeds"] = n_seeds
    for key, value in config_values.items():
        _set(config, key.replace("__", "."), value)
    if "model__decoder" not in config_values:
        config["model"]["decoder"] = config["decoder"]["design"]
    record = {
        "status": status,
        "task": task,
        "experiment": experiment,
        "overrides": overrides if overrides is not None else [f"seed={seed}"],
        "seed": seed,
        "config": config,
        "metrics": None,
        "complexity": complexity,
        "timing": {"total_s": 1.0},
        "env": {"torch": "x"},
    }
    if det is not None:
        record["metrics"] = {"mean": {"image_auroc": det, "pixel_auroc": loc}, "per_class": per_class or {}}
    if status != "completed":
        record["error"] = error
    run_dir = root / rel
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "metrics.json").write_text(json.dumps(record, indent=2))
    return run_dir


def make_runs(root: Path) -> Path:
    """A multirun-like tree with every table, failed, missing and partial cells, and a config mismatch."""
    multirun = root / "multirun"
    s2 = multirun / "ablation"
    per_class_9 = {
        1: {
            "bottle": {"image_auroc": 0.98, "pixel_auroc": 0.97},
            "grid": {"image_auroc": 0.95, "pixel_auroc": 0.966},
        },
        2: {
            "bottle": {"image_auroc": 0.97, "pixel_auroc": 0.975},
            "grid": {"image_auroc": 0.958, "pixel_auroc": 0.965},
        },
    }
    for (design, nma, fj), seeds in S2_RUNS.items():
        for seed, (det, loc) in seeds.items():
            write_run(
                s2,
                f"decoder={design},nma={nma},fj={fj}/seed={seed}",
                seed=seed,
                det=det,
                loc=loc,
                decoder__design=design,
                model__nma=nma,
                model__fj=fj,
                per_class=per_class_9.get(seed) if (design, nma, fj) == ("lqd_a", True, True) else None,
            )
    # row 4 (1 query + FJ): its only run failed; row 5: one failed seed beside two completed ones
    write_run(
        s2,
        "decoder=query1,nma=False,fj=True/seed=1",
        seed=1,
        status="failed",
        error="RuntimeError: CUDA out of memory",
        decoder__design="query1",
        model__nma=False,
        model__fj=True,
    )
    write_run(
        s2,
        "decoder=query1,nma=True,fj=True/seed=3",
        seed=3,
        status="failed",
        error="ValueError: loss is nan",
        decoder__design="query1",
        model__nma=True,
        model__fj=True,
    )
    # row 9, seed 3: trained for 10 epochs instead of 40 -> must not be averaged with seeds 1-2
    write_run(
        s2,
        "decoder=lqd_a,nma=True,fj=True,epochs=10/seed=3",
        seed=3,
        det=0.900,
        loc=0.930,
        decoder__design="lqd_a",
        model__nma=True,
        model__fj=True,
        trainer__epochs=10,
    )

    lqd = multirun / "lqd"
    for design, both, det in (
        ("query1", False, 0.876),
        ("lqd_a", False, 0.951),
        ("lqd_a", True, 0.963),
        ("lqd_c", False, 0.790),
    ):
        write_run(
            lqd,
            f"{design}-{both}/seed=1",
            experiment="lqd",
            seed=1,
            det=det,
            loc=0.95,
            n_seeds=1,
            decoder__design=design,
            model__nma=both,
            model__fj=both,
        )
    for loss, dets in (("mse", (0.96, 0.97)), ("norm_mse", (0.95, 0.96)), ("cosine", (0.955, 0.965))):
        for seed, det in enumerate(dets, 1):
            write_run(
                multirun / "loss",
                f"loss={loss}/seed={seed}",
                experiment="loss",
                seed=seed,
                det=det,
                loc=0.96,
                n_seeds=2,
                loss__name=loss,
            )
    for frozen, det in ((True, 0.96), (False, 0.66)):
        write_run(
            multirun / "freeze",
            f"frozen={frozen}/seed=1",
            experiment="freeze",
            seed=1,
            det=det,
            loc=det,
            n_seeds=1,
            backbone__frozen=frozen,
        )
    for name, params in (("resnet18", 11_176_512), ("efficientnet_b4", 17_548_616)):
        write_run(
            multirun / "backbone",
            f"backbone={name}/seed=1",
            experiment="backbone",
            seed=1,
            det=0.93,
            loc=0.96,
            n_seeds=1,
            backbone__name=name,
            complexity={"learnable_params": 7_717_392, "gflops": 3.4, "backbone_params": params},
        )
    for model, flops, params in (("uniad", 5.24, 7_717_392), ("mlp", 4.1, 3_000_000)):
        write_run(
            multirun / "complexity",
            f"model={model}/seed=133",
            experiment="complexity",
            seed=133,
            task="complexity",
            n_seeds=1,
            model__name=model,
            backbone__name="efficientnet_b4",
            complexity={
                "learnable_params": params,
                "gflops": flops,
                "backbone_params": 17_548_616,
                "flops_counted": "truncated backbone + reconstruction + anomaly map",
            },
        )
    for model, det in (("mlp", 0.80), ("transformer", 0.87), ("uniad", 0.96)):
        write_run(
            multirun / "baselines",
            f"model={model}/seed=1",
            experiment="baselines",
            seed=1,
            det=det,
            loc=0.9,
            n_seeds=1,
            model__name=model,
        )
    for classes, det in (
        ([0, 1, 2, 3, 4], 0.85),
        ([0, 2, 4, 6, 8], 0.93),
        ([1, 3, 5, 7, 9], 0.89),
        ([5, 6, 7, 8, 9], 0.80),
    ):
        write_run(
            multirun / "cifar10",
            f"classes={''.join(map(str, classes))}/seed=1",
            experiment="cifar10",
            seed=1,
            det=det,
            loc=None,
            n_seeds=1,
            data__name="cifar10",
            data__normal_classes=classes,
        )
    # runs outside any experiment: the generic table (one row per swept-override combination)
    outputs = root / "outputs"
    write_run(
        outputs,
        "a",
        experiment=None,
        seed=1,
        det=0.91,
        loc=0.92,
        n_seeds=None,
        overrides=["model=mlp", "seed=1", "trainer.num_workers=4"],
        model__name="mlp",
    )
    write_run(
        outputs,
        "b",
        experiment=None,
        seed=2,
        det=0.93,
        loc=0.94,
        n_seeds=None,
        overrides=["model=mlp", "seed=2"],
        model__name="mlp",
    )
    maps_run = write_run(
        outputs, "c", experiment=None, seed=133, det=0.95, loc=0.96, n_seeds=None, overrides=[]
    )
    rng = np.random.default_rng(0)
    for category, index in (("bottle", 0), ("bottle", 1), ("grid", 3)):
        folder = maps_run / "maps" / category
        folder.mkdir(parents=True, exist_ok=True)
        mask = np.zeros((16, 16), dtype=np.uint8)
        mask[4:8, 4:8] = 1
        np.savez_compressed(
            folder / f"{index:03d}.npz",
            image=rng.random((16, 16, 3), dtype=np.float32),
            mask=mask,
            map=rng.random((16, 16), dtype=np.float32) + mask,
        )
    write_run(outputs, "vis", experiment=None, task="train_vis_decoder", n_seeds=None)
    (outputs / "broken").mkdir()
    (outputs / "broken" / "metrics.json").write_text("{not json")
    return root


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return make_runs(tmp_path_factory.mktemp("records"))


@pytest.fixture(scope="module")
def report(runs):
    return build_report([runs / "multirun", runs / "outputs"])


def _table(report, key):
    return next(t for t in report.tables if t.key == key)


def _grid(report, key) -> Grid:
    return next(g for g in report.main if g.key == key)


def _row(grid: Grid, first: str, column: int = 0) -> dict:
    rows = [r for r in grid.rows if r[column] == first]
    assert len(rows) == 1, (first, rows)
    return dict(zip(grid.columns, rows[0], strict=True))


def _by_hand(values, scale=100.0) -> str:
    """mean ± sample std [95% t-interval (scipy)] (n=k); one value: mean (n=1)."""
    from scipy import stats

    xs = [v * scale for v in values]
    if len(xs) == 1:
        return f"{xs[0]:.1f} (n=1)"
    mean, std = statistics.fmean(xs), statistics.stdev(xs)
    lo, hi = stats.t.interval(0.95, len(xs) - 1, loc=mean, scale=std / len(xs) ** 0.5)
    return f"{mean:.1f} ± {std:.1f} [{lo:.1f}, {hi:.1f}] (n={len(xs)})"


def _unmarked(text: str) -> str:
    """A cell without its mark of the comparison with the default row (tested on its own)."""
    return text.rstrip("†‡")


# --- collect --------------------------------------------------------------------------------------------
def test_collect_one_row_per_run_with_overrides_and_experiment(runs):
    collection = collect([runs])
    frame = collection.frame
    n_s2 = sum(len(v) for v in S2_RUNS.values()) + 3
    assert len(frame[frame["experiment"] == "ablation"]) == n_s2
    assert {
        "run_dir",
        "status",
        "experiment",
        "seed",
        "overrides",
        "swept",
        "config.decoder.design",
        "config.model.nma",
        "metric.image_auroc",
        "complexity.gflops",
    } <= set(frame.columns)
    assert list(frame["run_dir"]) == sorted(frame["run_dir"])
    assert frame.loc[frame["run_dir"].str.endswith("outputs/a"), "swept"].item() == "model=mlp"
    cifar = frame[frame["experiment"] == "cifar10"]
    assert (0, 1, 2, 3, 4) in set(cifar["config.data.normal_classes"])
    assert collection.unreadable and collection.unreadable[0][0].endswith("broken/metrics.json")
    failed = failed_runs(frame)
    assert sorted(failed["error"]) == ["RuntimeError: CUDA out of memory", "ValueError: loss is nan"]


def test_aggregate_is_mean_and_sample_std():
    cell = aggregate([0.9, 0.92, float("nan"), 0.94], 100)
    assert cell.n == 3 and cell.mean == pytest.approx(92.0) and cell.std == pytest.approx(2.0)
    one = aggregate([0.5], 100)
    assert (one.mean, one.std, one.n) == (50.0, 0.0, 1)
    assert aggregate([], 100).mean is None


# --- Table S2 -------------------------------------------------------------------------------------------
def test_s2_layout_checkmarks_paper_values_and_delta(report):
    grid = _grid(report, "S2")
    assert grid.columns[:6] == ["#", "w/o query", "1 query", "layer-wise query", "NMA", "FJ"]
    assert {"Det. ours", "Det. paper", "Det. Δ", "Loc. ours", "Loc. paper", "Loc. Δ", "seeds"} <= set(
        grid.columns
    )
    assert [r[0] for r in grid.rows][:8] == ["1", "2", "3", "4", "5", "6", "7", "8"]
    row1 = _row(grid, "1")
    assert [row1[c] for c in ("w/o query", "1 query", "layer-wise query", "NMA", "FJ")] == [
        "✓",
        "-",
        "-",
        "-",
        "-",
    ]
    row5 = _row(grid, "5")
    assert [row5[c] for c in ("w/o query", "1 query", "layer-wise query", "NMA", "FJ")] == [
        "-",
        "✓",
        "-",
        "✓",
        "✓",
    ]
    # aggregation, by hand: mean ± sample std over the three seeds, in percent, one decimal
    dets = [v[0] for v in S2_RUNS[("none", False, False)].values()]
    locs = [v[1] for v in S2_RUNS[("none", False, False)].values()]
    assert _unmarked(row1["Det. ours"]) == _by_hand(dets) and _unmarked(row1["Loc. ours"]) == _by_hand(locs)
    assert (row1["Det. paper"], row1["Loc. paper"]) == ("69.5", "79.4")
    mean_det = round(statistics.fmean(dets) * 100, 1)
    assert row1["Det. Δ"] == f"{mean_det - 69.5:+.1f}"
    assert row1["seeds"] == "3/3"
    row6 = _row(grid, "6")  # one seed: no spread, no "± 0.0", no interval
    assert row6["Det. ours"] == "95.0 (n=1)" and row6["Det. Δ"] == "+0.0" and row6["seeds"] == "1/3"


def test_s2_missing_failed_and_partial_cells_are_listed(report):
    grid = _grid(report, "S2")
    row3, row4, row5 = _row(grid, "3"), _row(grid, "4"), _row(grid, "5")
    assert row3["Det. ours"] == "—" and row3["Det. Δ"] == "—" and row3["Det. paper"] == "96.1"
    assert row3["seeds"] == "0/3"
    assert row4["Loc. ours"] == "—" and row4["seeds"] == "0/3, 1 failed"
    assert row5["seeds"] == "2/3, 1 failed"
    notes = "\n".join(grid.notes)
    assert "Missing cells (2)" in notes
    assert "row 3: 1 query + NMA: no completed run (no run)" in notes
    assert "row 4: 1 query + FJ: no completed run (1 failed)" in notes
    assert "Failed runs (2)" in notes
    assert "row 4: 1 query + FJ, seed 1: RuntimeError: CUDA out of memory" in notes
    assert "row 5: 1 query + NMA + FJ, seed 3: ValueError: loss is nan" in notes
    assert "row 5: 1 query + NMA + FJ: 2 of 3 seeds completed" in notes
    assert "row 6: layer-wise query: 1 of 3 seeds completed" in notes


def test_s2_runs_with_different_configs_are_not_averaged(report):
    grid = _grid(report, "S2")
    assert "runs differ in" in grid.columns
    nine = [dict(zip(grid.columns, r, strict=True)) for r in grid.rows if r[0] == "9"]
    assert [r["runs differ in"] for r in nine] == ["trainer.epochs=10", "trainer.epochs=40"]
    by_epochs = {r["runs differ in"]: r for r in nine}
    assert by_epochs["trainer.epochs=10"]["Det. ours"] == "90.0 (n=1)"  # one seed: no "± 0.0"
    assert by_epochs["trainer.epochs=40"]["Det. ours"] == _by_hand([0.966, 0.964])
    assert by_epochs["trainer.epochs=40"]["Det. paper"] == "96.5"
    assert any("not averaged together" in n and "trainer.epochs" in n for n in grid.notes)
    # seed and machine-specific keys (paths, trainer.num_workers) never split a row
    assert sum(1 for r in grid.rows if r[0] == "1") == 1


def test_s2_markdown_and_bold_best(report):
    grid = _grid(report, "S2")
    md = grid_markdown(grid)
    lines = md.splitlines()
    assert lines[0].startswith("| # ") and set(lines[1]) <= set("|-: ")
    assert len(lines) == 2 + len(grid.rows) and all(len(line) == len(lines[0]) for line in lines)
    det = grid.columns.index("Det. ours")
    best = [i for i, j in grid.bold if j == det]
    assert [grid.rows[i][0] for i in best] == ["9"]  # 96.5 (seeds 1-2 of row 9)
    paper = grid.columns.index("Det. paper")
    assert sorted(grid.rows[i][0] for i, j in grid.bold if j == paper) == ["9", "9"]  # 96.5 in both variants


# --- the other tables -----------------------------------------------------------------------------------
def test_s3_designs_with_and_without_nma_fj(report):
    grid = _grid(report, "S3")
    assert grid.columns[:3] == ["design", "NMA", "FJ"]
    assert [r[0] for r in grid.rows][:3] == ["vanilla", "(a)", "(a)"]
    vanilla = _row(grid, "vanilla")
    assert (
        _unmarked(vanilla["Det. ours"]) == "87.6 (n=1)"
        and vanilla["Det. paper"] == "87.6"
        and vanilla["Det. Δ"] == "+0.0"
    )
    a_both = [dict(zip(grid.columns, r, strict=True)) for r in grid.rows if r[0] == "(a)" and r[1] == "✓"][0]
    assert a_both["Det. paper"] == "96.5" and a_both["Loc. paper"] == "96.8"
    c_both = [dict(zip(grid.columns, r, strict=True)) for r in grid.rows if r[0] == "(c)" and r[1] == "✓"][0]
    assert c_both["Det. paper"] == "—" and c_both["Det. ours"] == "—"  # the paper did not run it either
    assert len(grid.rows) == 13


def test_s4_s5_s6_rows_and_paper(report):
    s4 = _grid(report, "S4")
    assert [r[0] for r in s4.rows] == ["MSE", "Norm MSE", "Cosine"]
    assert _unmarked(_row(s4, "Cosine")["Det. ours"]) == _by_hand([0.955, 0.965])
    assert _row(s4, "Norm MSE")["Det. paper"] == "96.4" and _row(s4, "Norm MSE")["Loc. paper"] == "96.9"
    s5 = _grid(report, "S5")
    assert [r[0] for r in s5.rows] == ["Training", "Freezing"]
    assert (
        _row(s5, "Training")["Det. paper"] == "65.9"
        and _unmarked(_row(s5, "Training")["Det. ours"]) == "66.0 (n=1)"
    )
    s6 = _grid(report, "S6")
    assert [r[0] for r in s6.rows] == [
        "Res-18",
        "Res-34",
        "Res-50",
        "Res-101",
        "Eff-b0",
        "Eff-b2",
        "Eff-b4",
        "Eff-b6",
    ]
    res18 = _row(s6, "Res-18")
    assert res18["Backbone params (M) paper"] == "11.4" and res18["Backbone params (M) ours"] == "11.2"
    assert _row(s6, "Eff-b4")["Backbone params (M) paper"] == "19"
    assert _row(s6, "Res-50")["Det. ours"] == "—"


def test_s7_complexity_with_paper_only_rows(report):
    grid = _grid(report, "S7")
    uniad = _row(grid, "UniAD (ours)")
    assert uniad["GFLOPs ours"] == "5.24" and uniad["GFLOPs paper"] == "6.46" and uniad["GFLOPs Δ"] == "-1.22"
    assert uniad["Learnable params (M) ours"] == "7.72" and uniad["Learnable params (M) paper"] == "7.48"
    draem = _row(grid, "DRAEM [16]")
    assert draem["GFLOPs ours"] == "—" and draem["GFLOPs paper"] == "245.15" and draem["seeds"] == "paper only"
    padim = _row(grid, "PaDiM [5]")  # measured by this suite (no record here), compared on stored statistics
    assert padim["GFLOPs paper"] == "23.25" and padim["Stored statistics (M numbers) paper"] == "950.36"
    assert _row(grid, "MLP (C.1)")["GFLOPs paper"] == "—"
    notes = "\n".join(grid.notes)
    assert "DRAEM" not in notes  # paper-only rows are not "missing"
    assert "Missing cells (5)" in notes  # transformer, cnn, metaformer_ae, PaDiM, PatchCore
    assert "What our GFLOPs count" in notes
    col = grid.columns.index("GFLOPs ours")
    assert [grid.rows[i][0] for i, j in grid.bold if j == col] == ["MLP (C.1)"]  # fewer FLOPs is better


def test_baselines_and_cifar10(report):
    c1 = _grid(report, "C.1")
    assert [r[0] for r in c1.rows] == [
        "MLP (C.1)",
        "CNN (C.1)",
        "Transformer (C.1)",
        "UniAD (ours)",
        "Metaformer AE (seed 003)",
        "PatchCore (Roth et al. 2022)",
        "PaDiM (Defard et al. 2021)",
    ]
    assert _row(c1, "MLP (C.1)")["Det. paper"] == "—" and _row(c1, "MLP (C.1)")["Det. Δ"] == "—"
    c4 = _grid(report, "C.4")
    assert [r[0] for r in c4.rows] == ["{01234}", "{02468}", "{13579}", "{56789}", "mean"]
    assert "Loc. ours" not in c4.columns
    assert _row(c4, "{56789}")["Det. paper"] == "79.6"
    mean = _row(c4, "mean")
    assert mean["Det. ours"] == f"{statistics.fmean([85.0, 93.0, 89.0, 80.0]):.1f} (mean of 4)"
    assert mean["Det. paper"] == "86.5"
    assert "official UniAD README" in c4.caption


def test_generic_table_for_runs_without_experiment(report):
    grid = _grid(report, "no-experiment")
    assert grid.columns[0] == "overrides"
    assert [r[0] for r in grid.rows] == ["(defaults)", "model=mlp"]
    mlp = _row(grid, "model=mlp")
    assert _unmarked(mlp["Det."]) == _by_hand([0.91, 0.93]) and mlp["seeds"] == "2"  # num_workers does not split
    md = markdown_report(report)
    assert "Not tabulated (tasks without metrics): train_vis_decoder: 1." in md
    assert "broken/metrics.json" in md


def test_per_class_tables_with_mean_row(report):
    grids = per_class_grids(_table(report, "S2"))
    assert len(grids) == 1
    grid = grids[0]
    assert grid.columns == ["category", "image AUROC", "pixel AUROC"]
    assert [r[0] for r in grid.rows] == ["bottle", "grid", "mean"]
    assert _unmarked(_row(grid, "bottle")["image AUROC"]) == _by_hand([0.98, 0.97])
    mean_seed = [statistics.fmean([0.98, 0.95]), statistics.fmean([0.97, 0.958])]
    assert _unmarked(_row(grid, "mean")["image AUROC"]) == _by_hand(mean_seed)
    assert "row 9" in grid.title and "trainer.epochs=40" in grid.title


# --- LaTeX ----------------------------------------------------------------------------------------------
def test_latex_structure(report):
    grid = _grid(report, "S2")
    tex = grid_latex(grid)
    for token in (
        "\\begin{table}",
        "\\begin{tabular}{",
        "\\toprule",
        "\\midrule",
        "\\bottomrule",
        "\\end{tabular}",
        "\\caption{",
        "\\label{tab:S2}",
        "\\textbf{",
    ):
        assert token in tex, token
    assert tex.index("\\toprule") < tex.index("\\midrule") < tex.index("\\bottomrule")
    assert tex.isascii()
    assert "\\textbf{96.5 $\\pm$ 0.1 [95.2, 97.8] (n=2)}" in tex
    assert "$\\surd$" in tex and "---" in tex
    caption = re.search(r"\\caption\{(.*)\}", tex).group(1)
    assert "Dataset: synthetic" in caption and "profile: demo" in caption and "seeds: 1, 2, 3" in caption
    assert "AUROC" in caption
    assert "trainer.epochs=10" in tex and "CUDA out of memory" in tex  # notes under the table


def test_latex_document_is_minimal_and_balanced(tmp_path, report):
    out = write_report(report, tmp_path / "out", ["tex"])
    tex = (tmp_path / "out" / "tables.tex").read_text()
    assert out == [tmp_path / "out" / "tables.tex"]
    assert tex.startswith("\\documentclass{article}\n\\usepackage{booktabs}\n")
    assert (
        tex.count("\\begin{table}") == tex.count("\\end{table}") == len(report.main) + len(report.per_class)
    )
    assert tex.count("{") == tex.count("}") + tex.count("\\{") - tex.count("\\}")
    assert tex.isascii() and tex.rstrip().endswith("\\end{document}")


def test_tex_escape():
    assert tex_escape("a_b & 5% #1 ± —") == "a\\_b \\& 5\\% \\#1 $\\pm$ ---"
    assert tex_escape("café").isascii()


# --- files, determinism, CLI ----------------------------------------------------------------------------
def test_outputs_are_deterministic(tmp_path, runs):
    first = write_report(
        build_report([runs / "multirun", runs / "outputs"]), tmp_path / "a", ["md", "tex", "csv"]
    )
    second = write_report(
        build_report([runs / "multirun", runs / "outputs"]), tmp_path / "b", ["md", "tex", "csv"]
    )
    assert [p.name for p in first] == [p.name for p in second]
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_build_tables_is_a_pure_function_of_frames(runs):
    frame = collect([runs / "multirun"]).frame
    paper = load_paper()
    tables = build_tables(frame, paper)
    assert [t.key for t in tables] == ["S2", "S3", "S4", "S5", "S6", "S7", "C.1", "C.4"]
    assert grid_markdown(main_grid(tables[0])) == grid_markdown(main_grid(build_tables(frame, paper)[0]))


def test_paper_numbers_come_from_the_table_declarations():
    paper = load_paper()
    assert set(paper["table"]) == {"S2", "S3", "S4", "S5", "S6", "S7", "C.1", "C.4", "B", "D-abl", "F"}
    s2 = paper[paper["table"] == "S2"]
    assert len(s2) == 18 and s2["source"].str.startswith("seed 000, Table S2").all()
    assert paper[(paper["table"] == "C.4")]["source"].str.contains("official UniAD README").all()
    assert paper.query("table == 'S7' and row == 'uniad' and metric == 'gflops'")["value"].item() == 6.46
    assert paper.query("table == 'S6' and row == 'efficientnet_b4' and metric == 'backbone_params_m'")[
        "text"].item() == "19"  # as printed


def test_cli_end_to_end(tmp_path, runs):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "reports", str(runs / "multirun"), str(runs / "outputs"), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "## Table S2" in proc.stdout and "| # " in proc.stdout
    for name in ("tables.md", "tables.tex", "results.csv", "summary.csv", "per_class.csv"):
        assert (out / name).is_file(), name
    assert (out / "tables.md").read_text().startswith("# UniAD Bench results")
    results = (out / "results.csv").read_text().splitlines()
    assert len(results) == 1 + len(collect([runs / "multirun", runs / "outputs"]).frame)
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert {"S2.png", "S3.png", "S4.png", "S5.png", "S6.png", "S7.png", "C.1.png", "C.4.png"} <= set(figures)
    maps = [f for f in figures if f.startswith("maps_")]
    assert maps == ["maps_outputs_c.png"]
    for name in figures:
        assert (out / "figures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # another process (another hash seed) gives the same bytes as this one
    here = write_report(build_report([runs / "multirun", runs / "outputs"]), tmp_path / "here", ["md", "tex"])
    for path in here:
        assert path.read_bytes() == (out / path.name).read_bytes(), path.name


def test_cli_formats_and_empty_folder(tmp_path, runs, capsys):
    out = tmp_path / "out"
    assert cli_main([str(runs / "multirun" / "loss"), "--out", str(out), "--format", "md"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["tables.md"]
    printed = capsys.readouterr().out
    assert "## Table S4" in printed and printed.count("| MSE ") == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main([str(empty), "--out", str(out)]) == 1
    assert "no metrics.json" in capsys.readouterr().err
    assert cli_main([str(empty), "--format", "pdf"]) == 2
    assert "unknown format" in capsys.readouterr().err
    assert cli_main([str(tmp_path / "nowhere")]) == 2
    assert "no such run folder" in capsys.readouterr().err


def test_variant_labels_name_the_fewest_keys_and_code_versions_are_noted(tmp_path):
    root = tmp_path / "runs"
    for seed, profile, sha in (
        (1, "demo", "aaaaaaaaaaaa"),
        (2, "demo", "bbbbbbbbbbbb"),
        (3, "paper", "aaaaaaaaaaaa"),
    ):
        extra = {"trainer__epochs": 1000, "trainer__lr": 1e-4} if profile == "paper" else {}
        run = write_run(
            root,
            f"r{seed}",
            experiment="loss",
            seed=seed,
            det=0.9,
            loc=0.9,
            n_seeds=3,
            profile_name=profile,
            **extra,
        )
        record = json.loads((run / "metrics.json").read_text())
        record["env"]["git_sha"] = sha
        (run / "metrics.json").write_text(json.dumps(record))
    report = build_report([root])
    grid = _grid(report, "S4")
    mse = [dict(zip(grid.columns, r, strict=True)) for r in grid.rows if r[0] == "MSE"]
    assert [r["runs differ in"] for r in mse] == [
        "profile_name=demo (+2 more keys)",
        "profile_name=paper (+2 more keys)",
    ]
    assert [r["seeds"] for r in mse] == ["2/3", "1/3"]
    notes = "\n".join(grid.notes)
    assert "runs differ in profile_name, trainer.epochs, trainer.lr — not averaged together" in notes
    assert "MSE [profile_name=demo (+2 more keys)]: averaged runs come from different code versions" in notes


def test_latex_minus_signs_and_brackets():
    grid = Grid(key="t", title="t", columns=["a", "b"], rows=[["[x]", "-1.5"], ["-", "+0.0"]], caption="c_d")
    tex = grid_latex(grid)
    assert "{}[x] & $-$1.5 \\\\" in tex and "\n- & +0.0 \\\\" in tex and "\\caption{c\\_d}" in tex
