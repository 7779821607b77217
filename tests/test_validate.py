"""Everything checkable without training is checked before it: one line, no training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import bench.job
from bench.errors import BenchError
from bench.job import run
from bench.validate import validate_config
from data.errors import DatasetError
from tests.conftest import compose_cfg
from tests.test_mvtec import make_tree


@pytest.mark.parametrize(("override", "named"), [
    ("eval.metrics=[image_auroc,pixel_aucroc]", "pixel_aucroc"),
    ("eval.metrics=[]", "eval.metrics"),
    ("eval.conventions=[oficial]", "oficial"),
    ("eval.normal_pixel_budget=0", "eval.normal_pixel_budget"),
    ("eval.normal_pixel_budget=-5", "eval.normal_pixel_budget"),
    ("trainer.epochs=-3", "trainer.epochs"),
    ("trainer.epochs=0", "trainer.epochs"),
    ("trainer.epochs=2.7", "trainer.epochs"),
    ("data.categories=[]", "data.categories"),
    ("seed=1.5", "seed"),
    ("seed=abc", "seed"),
    ("trainer.device=tpu", "trainer.device"),
])
def test_bad_config_values_are_refused_in_one_line(override, named):
    with pytest.raises(BenchError) as error:
        validate_config(compose_cfg(["profile=smoke", override]))
    assert named in str(error.value) and "\n" not in str(error.value)


def test_good_config_values_pass():
    validate_config(compose_cfg(["profile=smoke", "eval.normal_pixel_budget=1000", "eval.metrics=all", "seed=0",
                                 "data.categories=[brick]", "trainer.device=cpu"]))
    validate_config(compose_cfg(["profile=smoke", "eval.normal_pixel_budget=null"]))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_one_line():
    with pytest.raises(BenchError, match="CUDA is not available"):
        validate_config(compose_cfg(["profile=smoke", "trainer.device=cuda"]))


@pytest.fixture
def never_trains(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(bench.job, "fit", fail)
    monkeypatch.setattr(bench.job, "build_detector", fail)


@pytest.mark.parametrize("override", ["trainer.epochs=-3", "trainer.epochs=2.7", "data.categories=[]",
                                      "eval.metrics=[auroc]", "eval.metrics=[]"])
def test_a_job_with_a_bad_value_fails_before_training_with_a_record(tmp_paths, never_trains, override):
    with pytest.raises(BenchError):
        run(compose_cfg(["profile=smoke", override]), tmp_paths / "run")
    record = json.loads((tmp_paths / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and override.split("=")[0] in record["error"]


@pytest.mark.parametrize("where", ["train", "test"])
def test_a_truncated_or_empty_image_is_named_before_training(tmp_paths, never_trains, where):
    root = make_tree(tmp_paths / "mvtec")
    if where == "train":
        bad = root / "bottle" / "train" / "good" / "001.png"
        bad.write_bytes(b"")
    else:
        bad = root / "grid" / "test" / "bent" / "000.png"
        bad.write_bytes(bad.read_bytes()[:70])  # the header survives: the layout scan passes
    with pytest.raises(DatasetError) as error:
        run(compose_cfg(["profile=smoke", "data=mvtec", f"data.root={root}"]), tmp_paths / "run")
    assert str(bad) in str(error.value) and "\n" not in str(error.value)
    assert str(bad) in json.loads((tmp_paths / "run" / "metrics.json").read_text())["error"]


def test_a_file_gone_after_the_scan_is_named_and_a_checked_file_is_not_decoded_again(tmp_path, monkeypatch):
    from bench.validate import validate_data
    from data.mvtec import MVTecDataset

    root = make_tree(tmp_path / "mvtec")
    dataset = MVTecDataset(root, "train", image_size=32)
    decoded = []
    import data.transforms

    real = data.transforms.check_image
    monkeypatch.setattr(data.transforms, "check_image", lambda p: decoded.append(p) or real(p))
    validate_data([dataset], tmp_path / "index")
    validate_data([dataset], tmp_path / "index")
    assert len(decoded) == len(dataset.files())  # the second job only stats the files
    gone = dataset.samples[1].path
    Path(gone).unlink()
    with pytest.raises(DatasetError, match=f"unreadable image {gone}"):
        validate_data([dataset], tmp_path / "index")


# --- every numeric and enumerated key against its range: the job's (JOB_RULES) or its option class's (RULES) ---

@pytest.mark.parametrize("override", [
    "trainer.batch_size=-4", "trainer.batch_size=0", "trainer.clip_grad=-1", "trainer.lr_step=0",
    f"seed={2**60}", "seed=-1", "eval.pool_size=0", "eval.batch_size=0", "eval.score=median",
    "eval.save_maps=abc", "eval.save_maps=-1", "model.fj_prob=3", "model.fj_prob=-0.1", "model.dropout=1.0",
    "trainer.lr=0", "trainer.lr=nan", "trainer.lr_gamma=0", "trainer.weight_decay=-1", "trainer.ckpt_every=-1",
    "trainer.precision=fp16", "eval.precision=fp8", "trainer.num_workers=-1", "trainer.compile=maybe",
    "trainer.optimizer.betas=[0.9,1.5]", "cache.dtype=int8", "cache.disk=2", "data.image_size=0",
    "data.score=median", "data.outlayers=[0,1]", "model.fj_scale=-2", "model.decoder=lqd_z",
    "arch.neighbor_size=[3]", "arch.nhead=0", "model.hidden_dim=30", "lock_stale_h=0", "n_seeds=0",
    "data.generator.n_train=0", "data.generator.defect_size=[0.2,0.1]", "vis.num_images=0",
])
def test_every_out_of_range_value_is_refused_naming_key_and_range(override):
    key = override.split("=")[0]
    with pytest.raises(BenchError) as error:
        validate_config(compose_cfg(["profile=smoke", override]))
    message = str(error.value)
    assert message.startswith(key) and "\n" not in message
    assert "give" in message  # the allowed range or choices follow


@pytest.mark.parametrize(("overrides", "key"), [
    (["model=padim", "model.image_score=mean"], "model.image_score"),
    (["model=patchcore", "model.coreset_ratio=0"], "model.coreset_ratio"),
    (["data=cifar10", "data.normal_classes=[0,12]"], "data.normal_classes"),
    (["logger=wandb", "logger.images=-1"], "logger.images"),
])
def test_model_and_dataset_keys_are_checked_where_they_exist(overrides, key):
    with pytest.raises(BenchError, match=f"^{key}="):
        validate_config(compose_cfg(["profile=smoke", *overrides]))


def test_edge_values_inside_the_ranges_pass():
    validate_config(compose_cfg(["profile=smoke", "trainer.clip_grad=null", "trainer.clip_grad=0", "seed=0",
                                 f"seed={2**32 - 1}", "eval.save_maps=0", "model.fj_prob=0", "trainer.lr_gamma=1",
                                 "eval.score=mean", "trainer.precision=tf32"]))


@pytest.mark.parametrize("name", ["../../other/victim", "/abs/path", "a/b", "..", ".hidden", "mean"])
def test_a_category_is_a_plain_name_never_a_path_or_the_mean_row(name):
    with pytest.raises(BenchError, match="data.categories"):
        validate_config(compose_cfg(["profile=smoke", f"data.categories=[alpha,'{name}']"]))


def test_a_job_with_a_nonsense_batch_size_fails_before_training(tmp_paths, never_trains):
    with pytest.raises(BenchError):
        run(compose_cfg(["profile=smoke", "trainer.batch_size=-4", "eval.batch_size=8"]), tmp_paths / "run")
    record = json.loads((tmp_paths / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and "trainer.batch_size" in record["error"]


NULL_NAMES = {"ckpt", "data.categories", "data.labels", "experiment", "logger.entity", "predict.input"}


def _options() -> list[list[str]]:
    from tests.conftest import ROOT

    groups = ["model", "decoder", "loss", "backbone", "data", "profile", "logger", "task"]
    options = [[f"{g}={p.stem}"] for g in groups for p in sorted((ROOT / "conf" / g).glob("*.yaml"))]
    return options + [[f"+experiment={p.stem}"] for p in sorted((ROOT / "conf" / "experiment").glob("*.yaml"))]


def _leaves(node, prefix=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}{k}.")
    elif isinstance(node, list) and node and all(not isinstance(v, dict | list) for v in node):
        yield prefix[:-1], node[0]
    elif not isinstance(node, list):
        yield prefix[:-1], node


def test_every_number_and_flag_of_every_config_option_has_a_rule_and_its_default_passes():
    """Checked against the rules the job finds: its own (``JOB_RULES``) and those each option's class
    declares, a key also counting as ruled when a ruled key interpolates it (``backbone.outlayers:
    ${data.outlayers}`` rules ``data.outlayers``)."""
    from omegaconf import OmegaConf

    from bench.validate import checked_rules

    uncovered = set()
    for option in _options():
        cfg = compose_cfg(option)
        if cfg.backbone.weights == "pretrained":  # validate_config would fetch them: random ones, same keys
            cfg = compose_cfg([*option, "backbone.weights=none"])
        ruled = {name for check in checked_rules(cfg) for name in check[:2]}
        tree = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
        tree.pop("hydra", None)
        tree.pop("paths", None)
        for key, value in _leaves(tree):
            numeric = isinstance(value, bool | int | float) and not key.rpartition(".")[2].startswith("_")
            # a null default may hide a number (eval.every): only these nulls are names or paths
            numeric = numeric or (value is None and key not in NULL_NAMES)
            if numeric and key not in ruled:
                uncovered.add(f"{key} ({' '.join(option)})")
        if "trainer.device" not in " ".join(option):
            validate_config(cfg)  # every shipped option passes its own checks
    assert not uncovered, f"keys without a range (RULES beside the option's class): {sorted(uncovered)}"


@pytest.mark.parametrize(("overrides", "key"), [
    (["data=realiad", "data.resolution=300"], "data.resolution"),
    (["data=realiad", "data.views=[C9]"], "data.views"),
    (["data=visa", "data.strict_counts=2"], "data.strict_counts"),
])
def test_benchmark_reader_keys_are_checked_before_training(overrides, key):
    with pytest.raises(BenchError, match=f"^{key}="):
        validate_config(compose_cfg(["profile=smoke", *overrides]))
    validate_config(compose_cfg(["profile=smoke", overrides[0]]))
