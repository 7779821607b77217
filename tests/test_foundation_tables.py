"""The Dinomaly ablation (conf/experiment/dinomaly.yaml) and the foundation-feature table
(conf/experiment/foundation.yaml): rows told apart on declared keys, rendered with the paper's numbers, and
swept end to end at profile=smoke."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reports.declaration import parse_table, specs_by_experiment
from tests.conftest import ROOT
from tests.test_tables import _experiment

TINY = ["profile=smoke", "backbone=dinov2_reg_vits14", "backbone.weights=none", "data.generator.n_train=4",
        "trainer.epochs=1", "data.categories=[brick,logo]", "eval.metrics=[image_auroc,pixel_auroc]", "seed=1"]


def _record(root: Path, name: str, experiment: str, config: dict, choices: dict, det: float, seed: int = 1) -> None:
    config = {"task": "fit", "seed": seed, "experiment": experiment, "n_seeds": 3, "profile_name": "dinomaly",
              "data": {"name": "mvtec", "image_size": 392}, "backbone": {"name": "dinov2_reg_vitb14"}, **config}
    record = {"status": "completed", "task": "fit", "experiment": experiment, "seed": seed, "schema": 2,
              "overrides": [f"seed={seed}"], "choices": choices, "config": config,
              "metrics": {"mean": {"image_auroc": det, "pixel_auroc": det}, "per_class": {}}}
    (root / name / f"seed={seed}").mkdir(parents=True)
    (root / name / f"seed={seed}" / "metrics.json").write_text(json.dumps(record))


def _report(runs: Path, out: Path) -> tuple[str, str]:
    proc = subprocess.run([sys.executable, "-m", "reports", str(runs), "--out", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return (out / "tables.md").read_text(), (out / "tables.tex").read_text()


def test_declared_keys_place_runs_of_other_methods_and_of_variants(tmp_path):
    """With ``keys``, a row holds runs whatever the keys it leaves open (and runs whose model lacks them);
    of the rows a run satisfies, the one that overrides most keys holds it."""
    decl = parse_table(_experiment(tmp_path, """\
        key: T
        title: t
        columns: [method]
        metrics: [image_auroc]
        keys: [model, model.nma, decoder]
        rows:
          - {id: uniad, overrides: [model=uniad, model.nma=true, decoder=lqd_a]}
          - {id: nonma, overrides: [model=uniad, model.nma=false, decoder=lqd_a]}
          - {id: patchcore, overrides: [model=patchcore]}
        """))
    assert decl.key_columns == ("choice.decoder", "choice.model", "config.model.nma")
    assert decl.optional_columns == ("choice.decoder", "config.model.nma")
    rows = {r.id: r.key for r in decl.rows}

    def run(model, decoder, nma=None):
        return {"choice.model": model, "choice.decoder": decoder, "config.model.nma": nma}

    assert decl.key_of(run("uniad", "lqd_a", True)) == rows["uniad"]
    assert decl.key_of(run("uniad", "lqd_a", False)) == rows["nonma"]
    assert decl.key_of(run("patchcore", "lqd_a")) == rows["patchcore"]  # no model.nma; decoder left open
    assert decl.key_of(run("uniad", "none", True)) not in rows.values()  # a variant no row declares
    assert decl.key_of({"choice.decoder": "lqd_a"}) is None  # the key every row sets is missing


def test_a_declared_key_no_row_overrides_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"keys \['model.fj'\]: no row overrides them"):
        parse_table(_experiment(tmp_path, """\
            key: T
            title: t
            columns: [method]
            metrics: [image_auroc]
            keys: [model, model.fj]
            rows:
              - {id: a, overrides: [model=uniad]}
            """))


def test_the_dinomaly_ablation_renders_every_row_and_the_papers_rows(tmp_path):
    spec = specs_by_experiment()["dinomaly"]
    assert [r.id for r in spec.rows] == ["base", "nb", "la", "lc", "ll", "nb+la", "nb+la+lc", "full"]
    assert spec.default_row == "full" and spec.paper_dataset == "mvtec"
    with_paper = {r.id: r.paper["image_auroc"] for r in spec.rows if r.paper}
    assert with_paper == {"base": 98.41, "full": 99.60}
    runs = tmp_path / "runs"
    for k, row in enumerate(spec.rows):
        values = dict(o.split("=", 1) for o in row.overrides)
        model = {"name": "dinomaly", "bottleneck_dropout": float(values["model.bottleneck_dropout"]),
                 "attention": values["model.attention"], "groups": json.loads(values["model.groups"])}
        for seed in (1, 2, 3):
            _record(runs, row.id, "dinomaly", {"model": model, "loss": {"name": "dinomaly_hm", "p": float(
                values["loss.p"])}}, {"model": "dinomaly", "loss": "dinomaly_hm"}, 0.9 + 0.01 * k + 0.001 * seed, seed)
    md, tex = _report(runs, tmp_path / "report")
    section = md.split("## Table D-abl")[1].split("\n## ")[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")][2:]
    assert [line.split("|")[1].strip() for line in lines] == [str(i) for i in range(1, 9)]  # no extra rows
    assert all("(n=3)" in line for line in lines)
    assert "98.41" in lines[0] and "97.18" in lines[0] and "99.6" in lines[-1] and "98.35" in lines[-1]
    assert "Table D-abl" in tex and "98.41" in tex and "98.35" in tex


def test_the_foundation_table_renders_each_method_in_its_row(tmp_path):
    spec = specs_by_experiment()["foundation"]
    assert [r.id for r in spec.rows] == ["uniad", "uniad-nma", "uniad-fj", "uniad-lqd", "dinomaly", "patchcore"]
    runs = tmp_path / "runs"
    uniad = {"name": "uniad", "nma": True, "fj": True}
    cells = {
        "uniad": ({"model": uniad}, {"model": "uniad", "decoder": "lqd_a"}),
        "uniad-nma": ({"model": {**uniad, "nma": False}}, {"model": "uniad", "decoder": "lqd_a"}),
        "uniad-fj": ({"model": {**uniad, "fj": False}}, {"model": "uniad", "decoder": "lqd_a"}),
        "uniad-lqd": ({"model": uniad}, {"model": "uniad", "decoder": "none"}),
        "dinomaly": ({"model": {"name": "dinomaly", "fj": False}}, {"model": "dinomaly", "decoder": "lqd_a"}),
        "patchcore": ({"model": {"name": "patchcore"}}, {"model": "patchcore", "decoder": "lqd_a"}),
    }
    for k, (name, (config, choices)) in enumerate(cells.items()):
        for seed in (1, 2):
            _record(runs, name, "foundation", config, choices, 0.8 + 0.02 * k + 0.001 * seed, seed)
    md, tex = _report(runs, tmp_path / "report")
    section = md.split("## Table F")[1].split("\n## ")[0]
    lines = [line for line in section.splitlines() if line.startswith("| ")][2:]
    assert [line.split("|")[1].strip() for line in lines] == [
        "UniAD", "UniAD w/o NMA", "UniAD w/o FJ", "UniAD w/o LQD", "Dinomaly", "PatchCore"]
    assert all("(n=2)" in line for line in lines)
    assert "99.6" in lines[4] and "98.35" in lines[4]  # Dinomaly's published figures; none elsewhere
    assert "99.6" not in "".join(lines[:4] + lines[5:])
    assert "Table F" in tex and "99.6" in tex


def _bench(args, tmp_path):
    env = {**os.environ, "UNIAD_BENCH_DATA": str(tmp_path / "datasets"), "UNIAD_BENCH_CACHE": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize(("experiment", "rows", "labels"), [
    ("dinomaly", "[base,full]", ["| 1 ", "| 8 "]),
    ("foundation", "[dinomaly,patchcore]", ["| Dinomaly ", "| PatchCore "]),
])
def test_the_table_sweeps_at_smoke_on_random_vit_features_and_renders(tmp_path, experiment, rows, labels):
    sweep = tmp_path / "sweep"
    proc = _bench([f"+experiment={experiment}", *TINY, f"hydra.sweeper.select={rows}", f"hydra.sweep.dir={sweep}"],
                  tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2/2 cells completed" in proc.stdout
    records = [json.loads(p.read_text()) for p in sweep.rglob("metrics.json")]
    assert sorted(r["status"] for r in records) == ["completed", "completed"]
    md, tex = _report(sweep, tmp_path / "report")
    for label in labels:
        (line,) = [line for line in md.splitlines() if line.startswith(label)]
        assert "(n=1)" in line
    assert "99.6" in md and "98.35" in md and "98.35" in tex
