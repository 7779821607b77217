"""What a job leaves beside its record: all seven metrics, csv and offline wandb logs, C.3 renderings."""

from __future__ import annotations

import csv
import json

import pytest

from bench.job import run
from metrics import METRICS
from tests.conftest import compose_cfg

SMOKE = ["profile=smoke", "data.generator.n_train=4"]


@pytest.mark.slow
def test_all_metrics_and_csv_logger(tmp_paths):
    record = run(compose_cfg([*SMOKE, "eval.metrics=all", "logger=csv"]), tmp_paths / "run")
    assert set(record["metrics"]["mean"]) == set(METRICS)
    for values in record["metrics"]["per_class"].values():
        assert set(values) == set(METRICS)
    rows = list(csv.DictReader((tmp_paths / "run" / "log.csv").open()))
    assert len(rows) == 2 and {"train/loss", "train/lr", "epoch"} <= set(rows[0])
    final = list(csv.DictReader((tmp_paths / "run" / "final_metrics.csv").open()))
    assert final[-1]["category"] == "mean" and len(final) == len(record["metrics"]["per_class"]) + 1


@pytest.mark.slow
def test_wandb_offline_run_holds_config_losses_table_and_images(tmp_paths, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    row9 = ["decoder.design=lqd_a", "model.nma=true", "model.fj=true"]  # Table S2 row 9 (conf/experiment/ablation.yaml)
    cfg = compose_cfg([*SMOKE, "logger=wandb", "eval.save_maps=1", "+experiment=ablation", *row9, "seed=2"])
    record = run(cfg, tmp_paths / "run", overrides=["+experiment=ablation", *row9, "seed=2"])
    assert record["status"] == "completed"
    runs = list((tmp_paths / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    files = {p.name for p in runs[0].rglob("*")}
    assert any(name.endswith(".wandb") for name in files)
    assert any(name.endswith(".png") for name in files)  # the anomaly-map images
    blob = next(runs[0].glob("*.wandb")).read_bytes()
    for needle in (b"neighbor_size", b"train/loss", b"metrics/per_class", b"maps/", b"ablation", b"seed=2"):
        assert needle in blob, needle


@pytest.mark.slow
def test_vis_decoder_and_recon_grid(tmp_paths):
    fit = run(compose_cfg(SMOKE), tmp_paths / "fit")
    assert fit["status"] == "completed"
    vis = run(compose_cfg([*SMOKE, "task=train_vis_decoder"]), tmp_paths / "vis")
    ckpt = vis["outputs"]["vis_decoder"]
    assert vis["outputs"]["loss_last"] < vis["outputs"]["loss_first"]
    recon = run(compose_cfg([*SMOKE, "task=vis_recon", f"ckpt={ckpt}", f"vis.models=[{tmp_paths / 'fit'}]"]),
                tmp_paths / "recon")
    png = tmp_paths / "recon" / "vis_recon.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert recon["outputs"]["images"] == 2 and recon["outputs"]["models"] == ["uniad (lqd_a)"]
    record = json.loads((tmp_paths / "recon" / "metrics.json").read_text())
    assert record["status"] == "completed"


@pytest.mark.slow
def test_vis_decoder_trains_on_vit_features(tmp_paths):
    """14-pixel patches: the decoder renders 4x4 tokens as 56 px, and the 64 px images are compared at 56 px."""
    vit = ["backbone=dinov2_vits14", "backbone.weights=none", "data.categories=[brick]", "vis.epochs=1"]
    vis = run(compose_cfg([*SMOKE, "task=train_vis_decoder", *vit]), tmp_paths / "vis")
    assert vis["status"] == "completed" and vis["outputs"]["loss_first"] > 0


@pytest.mark.slow
def test_tensorboard_run_holds_losses_metrics_and_map_pictures(tmp_paths):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    record = run(compose_cfg([*SMOKE, "logger=tensorboard", "eval.save_maps=1"]), tmp_paths / "run")
    assert record["status"] == "completed"
    events = EventAccumulator(str(tmp_paths / "run" / "tensorboard"), size_guidance={"images": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "metrics/image_auroc", "metrics/pixel_auroc"} <= scalars
    assert len(events.Scalars("train/loss")) == 2  # one per epoch of the smoke profile
    final = events.Scalars("metrics/image_auroc")[-1].value
    assert final == pytest.approx(record["metrics"]["mean"]["image_auroc"], abs=1e-6)
    assert any(tag.startswith("maps/") for tag in events.Tags()["images"])
