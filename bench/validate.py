"""Everything a job can check before it trains, checked before it trains (README "Bad input").

``validate_config`` runs first, on the config alone (no data, no model): every numeric and enumerated
key against its allowed range (``RULES``, the one table of them), metric names, categories, device.
``validate_data`` then decodes every train and test image and mask completely, so a truncated or
empty file stops the job in one line before the first epoch instead of in the middle of training or
evaluation (each file is decoded once per version: the result is remembered in ``bench.file_index``).
Every problem raises ``BenchError`` (or the dataset's ``DatasetError``) with one line naming the key or
file, the allowed range and what to do.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from bench.conventions import conventions_from_config
from bench.errors import BenchError
from bench.file_index import FileIndex
from bench.metrics import resolve_metrics

SEED_MAX = 2**32 - 1  # numpy's seed range; torch and Python accept it too


@dataclass(frozen=True)
class Rule:
    """The allowed values of one key: a number in a range, a boolean, or one of some choices.

    ``kind`` is ``int``, ``real``, ``bool`` or ``choice``; ``low``/``high`` bound a number (``open_low``
    / ``open_high`` exclude the bound), ``null`` allows None, ``items`` applies the rule to each entry
    of a list (of ``length`` entries when given).
    """

    kind: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple = ()
    null: bool = False
    items: bool = False
    length: int | None = None

    def allowed(self) -> str:
        if self.kind == "bool":
            text = "true or false"
        elif self.kind == "choice":
            text = "one of " + ", ".join(map(str, self.choices))
        else:
            noun = "an integer" if self.kind == "int" else "a number"
            if self.low is not None and self.high is not None:
                text = (f"{noun} in {'(' if self.open_low else '['}{_num(self.low)}, "
                        f"{_num(self.high)}{')' if self.open_high else ']'}")
            elif self.low is not None:
                text = f"{noun} {'>' if self.open_low else '>='} {_num(self.low)}"
            elif self.high is not None:
                text = f"{noun} {'<' if self.open_high else '<='} {_num(self.high)}"
            else:
                text = f"{noun} (finite)"
        if self.items:
            text = f"a list of {self.length or 'one or more'} values, each {text}"
        return text + (", or null" if self.null else "")

    def ok(self, value) -> bool:
        if value is None:
            return self.null
        if self.items:
            if not isinstance(value, list | tuple) or not value or (self.length and len(value) != self.length):
                return False
            single = Rule(self.kind, self.low, self.high, self.open_low, self.open_high, self.choices)
            return all(single.ok(v) for v in value)
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "choice":
            return isinstance(value, str | int) and not isinstance(value, bool) and value in self.choices
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return False  # true, "3" and [1] are not numbers
        if self.kind == "int" and not isinstance(value, numbers.Integral):
            return False  # 2.7 is not an integer
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return not (self.high is not None and (value >= self.high if self.open_high else value > self.high))


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def INT(low=None, high=None, **kw) -> Rule:  # noqa: N802
    return Rule("int", low, high, **kw)


def REAL(low=None, high=None, **kw) -> Rule:  # noqa: N802
    return Rule("real", low, high, **kw)


BOOL = Rule("bool")


def ONE_OF(*choices, **kw) -> Rule:  # noqa: N802
    return Rule("choice", choices=choices, **kw)


PROB = REAL(0, 1)
PRECISION = ONE_OF("fp32", "tf32", "bf16")

# Every numeric and enumerated key of conf/ with its allowed values; a key a config does not have (the
# keys of other models or datasets) is not checked. tests/test_validate.py checks that every number and
# boolean of every config option appears here.
RULES: dict[str, Rule] = {
    "seed": INT(0, SEED_MAX),
    "n_seeds": INT(1),
    "rerun": BOOL,
    "lock_stale_h": REAL(0, open_low=True),
    # architecture sizes (Table S1) shared by the models
    "arch.hidden_dim": INT(1), "arch.nhead": INT(1), "arch.num_encoder_layers": INT(0),
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
    "data.image_size": INT(32), "data.score": ONE_OF("max", "mean"),
    "data.outlayers": INT(1, 5, items=True),
    "data.normal_classes": INT(0, 9, items=True),
    "data.strict_counts": BOOL,  # the public benchmarks' readers (data/reader.py)
    "data.resolution": ONE_OF(256, 512, 1024, "raw"),  # Real-IAD's image folders
    "data.views": ONE_OF("C1", "C2", "C3", "C4", "C5", items=True, null=True),
    "data.generator.seed": INT(0, SEED_MAX), "data.generator.image_size": INT(32),
    "data.generator.n_train": INT(1), "data.generator.n_test_good": INT(1), "data.generator.n_test_defect": INT(1),
    "data.generator.defect_size": REAL(0, 0.5, open_low=True, items=True, length=2),
    "data.generator.defect_strength": REAL(0, 1, items=True, length=2),
    "data.generator.jitter": REAL(0, 0.5), "data.generator.brightness": REAL(0, 1, open_high=True),
    "backbone.frozen": BOOL, "backbone.outlayers": INT(1, 5, items=True), "backbone.feature_stride": INT(1),
    "decoder.design": ONE_OF("none", "query1", "lqd_a", "lqd_b", "lqd_c", "lqd_d", "lqd_e", "lqd_f"),
    "model.hidden_dim": INT(1), "model.nhead": INT(1), "model.num_encoder_layers": INT(0),
    "model.num_decoder_layers": INT(0), "model.dim_feedforward": INT(1), "model.dropout": REAL(0, 1, open_high=True),
    "model.decoder": ONE_OF("none", "query1", "lqd_a", "lqd_b", "lqd_c", "lqd_d", "lqd_e", "lqd_f"),
    "model.nma": BOOL, "model.neighbor_size": INT(1, items=True, length=2), "model.fp32_scores": BOOL,
    "model.fj": BOOL, "model.fj_scale": REAL(0), "model.fj_prob": PROB,
    # PaDiM and PatchCore (fitted in one pass)
    "model.layers": INT(1, 5, items=True), "model.d": INT(1), "model.epsilon": REAL(0, open_low=True),
    "model.sigma": REAL(0), "model.seed": INT(0, SEED_MAX), "model.patch_size": INT(1),
    "model.coreset_ratio": REAL(0, 1, open_low=True), "model.projection_dim": INT(1, null=True),
    "model.num_neighbors": INT(1), "model.query_chunk": INT(1), "model.bank_chunk": INT(1),
    "model.complexity_train_images": INT(1),
    "vis.num_images": INT(1), "vis.epochs": INT(1),
    "logger.images": INT(0),
}
# model.image_score's choices depend on the model
IMAGE_SCORES = {"padim": ("max", "suite"), "patchcore": ("reweighted", "max", "suite")}


def check_rules(cfg: DictConfig) -> None:
    """Every key of ``RULES`` that ``cfg`` has, against its rule; ``BenchError`` names the first bad one."""
    rules = dict(RULES)
    model = OmegaConf.select(cfg, "model.name")
    if model in IMAGE_SCORES:
        rules["model.image_score"] = ONE_OF(*IMAGE_SCORES[model])
    present = [k for k in rules if OmegaConf.select(cfg, k, default="<absent>", throw_on_missing=False) != "<absent>"]
    # keys set directly before those interpolated from them (eval.score: ${data.score}), so the error
    # names the key the user set
    present.sort(key=lambda k: _interpolated(cfg, k))
    for key in present:
        rule = rules[key]
        value = OmegaConf.select(cfg, key)
        if isinstance(value, ListConfig):
            value = OmegaConf.to_container(value, resolve=True)
        if not rule.ok(value):
            raise BenchError(f"{key}={_shown(value)} is out of range: give {rule.allowed()}")
    for prefix in ("arch", "model"):
        hidden, heads = OmegaConf.select(cfg, f"{prefix}.hidden_dim"), OmegaConf.select(cfg, f"{prefix}.nhead")
        if isinstance(hidden, int) and isinstance(heads, int) and hidden % heads:
            raise BenchError(f"{prefix}.hidden_dim={hidden} is not divisible by {prefix}.nhead={heads}: "
                             "give a multiple of the number of heads")
    for key in ("data.generator.defect_size", "data.generator.defect_strength"):
        pair = OmegaConf.select(cfg, key)
        if pair is not None and len(pair) == 2 and pair[0] > pair[1]:
            raise BenchError(f"{key}={list(pair)}: give [low, high] with low <= high")


def _interpolated(cfg: DictConfig, key: str) -> bool:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    return isinstance(node, DictConfig) and OmegaConf.is_interpolation(node, leaf)


def _shown(value) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def validate_config(cfg: DictConfig) -> None:
    """The checks that need only the config; raises ``BenchError`` on the first problem."""
    from data.mvtec import category_problem

    check_rules(cfg)
    if cfg.task in ("fit", "eval"):
        metrics = cfg.eval.metrics
        try:
            resolve_metrics(list(metrics) if isinstance(metrics, ListConfig) else metrics)
        except ValueError as exc:
            raise BenchError(f"eval.metrics: {exc}") from None
        try:
            conventions_from_config(cfg.eval)
        except ValueError as exc:
            raise BenchError(str(exc)) from None
    categories = cfg.data.get("categories")
    if categories is not None:
        if not isinstance(categories, ListConfig | list):
            raise BenchError(f"data.categories={categories}: give a list of names, e.g. [bottle], or null (all)")
        if len(categories) == 0:
            raise BenchError("data.categories=[] selects no category: give null (all categories) or a list of names")
        for name in categories:
            problem = category_problem(name)
            if problem:
                raise BenchError(f"data.categories: {name!r} {problem}")
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
