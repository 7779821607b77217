"""+experiment=protocol end to end, the protocol grids of reports/protocol.py, and profile=ader."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from reports.protocol import protocol_decl, protocol_grid, selection_grid
from reports.report import build_report, markdown_report
from tests.conftest import CONF, ROOT, compose_cfg

EXPERIMENT = f"{CONF}/experiment/protocol.yaml"


def test_protocol_table_file_declares_every_convention_and_rule():
    decl = protocol_decl(EXPERIMENT)
    from metrics.conventions import CONVENTIONS
    from reports.selection import RULES

    assert decl.conventions == CONVENTIONS and decl.rules == RULES and decl.key == "pixel_auroc"
    cfg = compose_cfg(["+experiment=protocol"])
    assert cfg.eval.every == 10 and list(cfg.eval.conventions) == list(CONVENTIONS)
    assert cfg.model.name == "uniad" and cfg.profile_name == "demo"


def test_profile_ader_is_aders_uniad_recipe():
    cfg = compose_cfg(["profile=ader"])
    assert cfg.seed == 42 and cfg.data.image_size == 256 and cfg.backbone.timm_name == "tf_efficientnet_b4"
    assert (cfg.trainer.batch_size, cfg.trainer.lr, cfg.trainer.weight_decay) == (8, 1e-4, 1e-4)
    assert (cfg.trainer.epochs, cfg.trainer.lr_step, cfg.trainer.lr_gamma, cfg.trainer.clip_grad) == (100, 79, 0.1, 5.0)
    assert list(cfg.model.neighbor_size) == [8, 8] and cfg.arch.hidden_dim == 256 and cfg.arch.num_encoder_layers == 4
    assert cfg.eval.every == 10 and list(cfg.eval.conventions) == ["ader"] and cfg.eval.pool_size == 16
    assert compose_cfg(["profile=ader", "seed=1", "backbone=resnet18"]).backbone.timm_name == "resnet18"


@pytest.mark.slow
def test_protocol_experiment_runs_and_reports_every_convention_against_every_rule(tmp_path):
    env = {**os.environ, "UNIAD_BENCH_DATA": str(tmp_path / "datasets"), "UNIAD_BENCH_CACHE": str(tmp_path / "cache")}
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "+experiment=protocol", "profile=smoke", "data.generator.n_train=4",
         "eval.every=1", "seed=1,2", f"hydra.sweep.dir={sweep}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sweep.rglob("metrics.json")]
    assert len(records) == 2 and all(r["status"] == "completed" for r in records)
    assert all([p["epoch"] for p in r["curve"]["points"]] == [1, 2] for r in records)
    report = build_report([sweep])
    table = next(t for t in report.tables if t.spec.experiment == "protocol")
    grid = protocol_grid(table)
    assert len(grid.rows) == 6 * 3  # ours + 5 conventions, x last / official / ader
    ours_last = grid.rows[0]
    assert ours_last[:2] == ["ours", "last epoch"] and "(" not in ours_last[2]
    mean_image = sum(r["metrics"]["mean"]["image_auroc"] for r in records) / 2 * 100
    assert ours_last[2].startswith(f"{mean_image:.1f}")
    anomalib_last = next(r for r in grid.rows if r[:2] == ["anomalib", "last epoch"])
    assert anomalib_last[2].endswith("(+0.0)")  # anomalib >= 2.3 is ours on the same maps
    official_best = next(r for r in grid.rows if r[:2] == ["ours", "official best"])
    assert all(cell != "—" for cell in official_best[2:])
    text = markdown_report(report)
    assert "every convention x every selection rule" in text and "selected on the test set" in text
    assert selection_grid(table) is not None
