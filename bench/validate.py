"""Everything a job can check before it trains, checked before it trains (docs/reliability.md).

``validate_config`` runs first, on the config alone (no data, no model): every numeric and enumerated
key against its allowed range (the job's own keys: ``JOB_RULES``; an option's keys, the dataset's categories
among them: the ``RULES`` its class declares, found through ``_target_`` without building anything), metric
names, device.
``validate_data`` then decodes every train and test image and mask completely, so a truncated or
empty file stops the job in one line before the first epoch instead of in the middle of training or
evaluation (each file is decoded once per version: the result is remembered in ``bench.file_index``).
Every problem raises ``BenchError`` (or the dataset's ``DatasetError``) with one line naming the key or
file, the allowed range and what to do.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from bench.errors import BenchError
from bench.file_index import FileIndex
from metrics import metric_names, resolve_metrics
from metrics.conventions import conventions_from_config
from rules import BOOL, INT, ONE_OF, REAL, SEED, Rule, declared_rules, target_object

PRECISION = ONE_OF("fp32", "tf32", "bf16")

# The job's own numeric and enumerated keys with their allowed values. An option's keys (data.*, model.*,
# backbone.*, loss.*, logger.*: every top-level node with a ``_target_``) are declared beside its class
# (``RULES``, see the ``rules`` package) and found through ``_target_``; a key a config does not have is
# not checked. tests/test_validate.py checks that every number and boolean of every config option has a rule.
JOB_RULES: dict[str, Rule] = {
    "seed": SEED,
    "n_seeds": INT(1),
    "rerun": BOOL,
    "lock_stale_h": REAL(0, open_low=True),
    # architecture sizes (Table S1) shared by the models
    "arch.hidden_dim": INT(1, multiple_of="nhead"), "arch.nhead": INT(1), "arch.num_encoder_layers": INT(0),
    "arch.num_decoder_layers": INT(0), "arch.dim_feedforward": INT(1), "arch.fp32_scores": BOOL,
    "arch.neighbor_size": INT(1, items=True, length=2),
    "trainer.epochs": INT(1), "trainer.batch_size": INT(1),
    "trainer.lr": REAL(0, open_low=True), "trainer.weight_decay": REAL(0),
    "trainer.lr_step": INT(1), "trainer.lr_gamma": REAL(0, 1, open_low=True),
    "trainer.clip_grad": REAL(0, null=True),  # 0 or null: no clipping
    "trainer.ckpt_every": INT(0),  # 0: only the final epoch writes one
    "trainer.compile": BOOL, "trainer.precision": PRECISION,
    "trainer.num_workers": INT(0),
    "trainer.optimizer.betas": REAL(0, 1, open_high=True, items=True, length=2),
    "trainer.optimizer.fused": BOOL, "trainer.optimizer.lr": REAL(0, open_low=True),
    "trainer.optimizer.weight_decay": REAL(0), "trainer.scheduler.step_size": INT(1),
    "trainer.scheduler.gamma": REAL(0, 1, open_low=True),
    "eval.pool_size": INT(1), "eval.score": ONE_OF("max", "mean"), "eval.save_maps": INT(0),
    "eval.batch_size": INT(1), "eval.precision": PRECISION, "eval.normal_pixel_budget": INT(1, null=True),
    "eval.every": INT(1, null=True),
    "cache.features": BOOL, "cache.dtype": ONE_OF("float16", "float32", "bfloat16"), "cache.disk": BOOL,
    "vis.num_images": INT(1), "vis.epochs": INT(1),
    "verbose": BOOL, "trainer.threads": INT(1, null=True),
    "trainer.iterations": INT(1, null=True), "trainer.lr_interval": ONE_OF("epoch", "iteration"),
    "trainer.final_lr": REAL(0), "trainer.warmup_iterations": INT(0),
    "trainer.optimizer.eps": REAL(0, open_low=True), "trainer.optimizer.amsgrad": BOOL,
    "trainer.optimizer.clipping_threshold": REAL(0, open_low=True),
    "trainer.scheduler.milestones": INT(1, items=True), "trainer.scheduler.base_lr": REAL(0, open_low=True),
    "trainer.scheduler.final_lr": REAL(0), "trainer.scheduler.total": INT(1), "trainer.scheduler.warmup": INT(0),
    "trainer.scheduler.warmup_lr": REAL(0),
    "predict.threshold": REAL(null=True), "predict.maps": BOOL,  # task=predict (bench/predict.py)
}


def option_rules(cfg: DictConfig) -> dict[str, Rule]:
    """The rules of every option node of ``cfg`` (a top-level node with a ``_target_``), by full key
    ("model.fj_prob"): those its class declares, the class imported but nothing built."""
    rules: dict[str, Rule] = {}
    for group, node in cfg.items_ex(resolve=False):
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        target = node.get("_target_")
        try:
            owner = target_object(target)
        except (ImportError, AttributeError) as error:
            raise BenchError(f"{group}._target_={target} cannot be imported ({type(error).__name__}: {error}): "
                             f"give package.module.Class of an importable class in conf/{group}/") from None
        rules.update({f"{group}.{key}": rule for key, rule in declared_rules(owner).items()})
    return rules


def checked_rules(cfg: DictConfig) -> list[tuple[str, str, Rule]]:
    """``(key, source, rule)`` for each ruled key that ``cfg`` has: the job's own (``JOB_RULES``) then the
    options'. ``source`` is the key whose value it holds: itself, or the key it interpolates
    (``eval.score: ${data.score}`` is checked as ``data.score``), so an error names the key the user set."""
    rules = {**JOB_RULES, **option_rules(cfg)}
    present = [k for k in rules if OmegaConf.select(cfg, k, default="<absent>", throw_on_missing=False) != "<absent>"]
    return [(key, _source(cfg, key), rules[key]) for key in present]


def check_rules(cfg: DictConfig) -> None:
    """Every ruled key that ``cfg`` has, against its rule; ``BenchError`` names the first bad one."""
    checks = checked_rules(cfg)
    # a key's own rule before the rules of the keys that read it (eval.batch_size: ${trainer.batch_size})
    checks.sort(key=lambda check: check[0] != check[1])
    for key, source, rule in checks:
        value = OmegaConf.select(cfg, key)
        if isinstance(value, ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        if not rule.ok(value):
            refused = rule.refused(value)
            if refused:
                raise BenchError(f"{source}: {refused}")
            raise BenchError(f"{source}={_shown(value)} is out of range: give {rule.allowed()}")
        if isinstance(rule.multiple_of, str) and isinstance(value, int):
            sibling = f"{key.rpartition('.')[0]}.{rule.multiple_of}".lstrip(".")
            divisor = OmegaConf.select(cfg, sibling)
            if isinstance(divisor, int) and divisor > 0 and value % divisor:
                divisor_key = _source(cfg, sibling)
                raise BenchError(f"{source}={value} is not a multiple of {divisor_key}={divisor}: "
                                 f"give a multiple of {divisor} or change {divisor_key}")


def _source(cfg: DictConfig, key: str) -> str:
    """The key whose value ``key`` holds: the one it interpolates (``${data.score}``), else itself."""
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    if not isinstance(node, DictConfig) or not OmegaConf.is_interpolation(node, leaf):
        return key
    text = str(OmegaConf.to_container(node, resolve=False)[leaf])
    match = re.fullmatch(r"\$\{([A-Za-z_][\w.]*)\}", text)
    return _source(cfg, match.group(1)) if match and not match.group(1).startswith(".") else key


def _shown(value) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_config(cfg: DictConfig) -> None:
    """The checks that need only the config; raises ``BenchError`` on the first problem."""
    check_rules(cfg)
    if cfg.task in ("fit", "eval"):
        selected = cfg.eval.metrics
        if isinstance(selected, ListConfig | list) and len(selected) == 0:
            known = ", ".join(["all", *metric_names()])
            raise BenchError(f"eval.metrics=[] selects no metric: give one or more of {known}")
        try:
            resolve_metrics(list(selected) if isinstance(selected, ListConfig) else selected)
        except ValueError as exc:
            raise BenchError(f"eval.metrics: {exc}") from None
        try:
            conventions_from_config(cfg.eval)
        except ValueError as exc:
            raise BenchError(str(exc)) from None
    device = str(cfg.trainer.device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise BenchError(f"trainer.device={device} but CUDA is not available here: use trainer.device=auto or cpu")
    if device not in ("auto", "None"):
        try:
            torch.device(device)
        except RuntimeError:
            raise BenchError(f"trainer.device={device} is not a device: use auto, cpu or cuda[:N]") from None
    check_backbone_weights(cfg)


def check_backbone_weights(cfg: DictConfig) -> None:
    """Weights the backbone fetches are there before the data checks: a backbone class with a
    ``check_weights(name, timm_name, weights)`` (``models.vit_backbone``) finds them in the local cache
    or downloads them, so an offline machine stops here in one line. task=eval builds the checkpoint's
    backbone, not the command line's: it is not checked here."""
    from hydra.utils import get_class

    node = cfg.get("backbone")
    if node is None or cfg.task == "eval" or OmegaConf.select(cfg, "model.input") == "image":
        return
    check = getattr(get_class(str(node._target_)), "check_weights", None)
    if check is None:
        return
    try:
        check(name=str(node.name), timm_name=str(node.timm_name), weights=str(node.weights))
    except RuntimeError as exc:  # models.backbone.BackboneWeightsError: one line naming what to set
        raise BenchError(str(exc)) from None


def validate_data(datasets, index_dir: str | Path | None) -> None:
    """Decode every file of ``datasets`` (``data.protocol.AnomalyDataset.verify``) before training.

    ``index_dir`` holds the file index (``bench.file_index``): a file decoded before and unchanged since
    is not decoded again. A dataset of arrays in memory (CIFAR-10) has nothing left to check.
    """
    from data.errors import DatasetError
    from data.transforms import check_image

    def checked(path: str, index: FileIndex) -> str:
        try:
            return index.digest(path, check=check_image)
        except OSError as error:  # gone or unreadable since the layout scan
            raise DatasetError(f"unreadable image {path} ({error.strerror or error}): replace or remove the file") \
                from None

    for dataset in datasets:
        index = FileIndex.for_dataset(index_dir, dataset)
        try:
            dataset.verify(lambda path, index=index: checked(path, index))
        finally:
            index.save()
