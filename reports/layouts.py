"""The paper's table layouts: which config values identify each row, which columns each table has.

Rows are identified from ``config`` values (never by parsing override strings). A run whose key is not
one of the paper's rows still gets a row (appended after the paper's, described by its key).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from reports.collect import is_missing

CHECK, DASH = "✓", "-"


@dataclass(frozen=True)
class MetricSpec:
    """One measured quantity: where it is in the run frame and how a table shows it."""

    key: str  # the paper CSV's metric name
    label: str  # column label in the tables ("Det.")
    column: str  # run-frame column ("metric.image_auroc")
    scale: float = 100.0  # record value x scale = shown value (fractions -> percent)
    decimals: int = 1
    higher_is_better: bool = True
    with_std: bool = True  # show "mean ± std (n=k)"; False: deterministic counts, shown as a plain number
    bold: bool = True  # mark the best value of the column
    unit: str = "%"


DET = MetricSpec("image_auroc", "Det.", "metric.image_auroc")
LOC = MetricSpec("pixel_auroc", "Loc.", "metric.pixel_auroc")
GFLOPS = MetricSpec("gflops", "GFLOPs", "complexity.gflops", 1.0, 2, False, False, True, "G")
LEARNABLE = MetricSpec(
    "learnable_params_m",
    "Learnable params (M)",
    "complexity.learnable_params",
    1e-6,
    2,
    False,
    False,
    True,
    "M",
)
BACKBONE = MetricSpec(
    "backbone_params_m",
    "Backbone params (M)",
    "complexity.backbone_params",
    1e-6,
    1,
    False,
    False,
    False,
    "M",
)
METRIC_LABELS = {
    "image_auroc": "image AUROC",
    "pixel_auroc": "pixel AUROC",
    "image_ap": "image AP",
    "image_f1_max": "image F1-max",
    "pixel_ap": "pixel AP",
    "pixel_f1_max": "pixel F1-max",
    "pixel_aupro": "pixel AUPRO",
}
DEFINITIONS = (
    "Det. = image-level AUROC, Loc. = pixel-level AUROC, each the mean over categories, in %; "
    "ours = mean ± sample std (ddof=1) over seeds (n = completed seeds); "
    "Δ = ours − paper in points (from the rounded values)."
)


def metric_spec(name: str) -> MetricSpec:
    """A spec for any ``metrics.mean`` key (used by the generic and per-class tables)."""
    if name == "image_auroc":
        return DET
    if name == "pixel_auroc":
        return LOC
    return MetricSpec(name, METRIC_LABELS.get(name, name), f"metric.{name}")


@dataclass(frozen=True)
class RowSpec:
    id: str  # row id in the paper CSV (and in notes)
    key: tuple  # the config values that identify the row
    labels: tuple[str, ...]  # the label cells, one per Layout.label_columns
    name: str  # human-readable name used in notes
    paper_row: str | None = None  # paper CSV row (default: id)
    paper_only: bool = False  # a row of the paper with no run of ours (other methods of Table S7)
    short: str | None = None  # label in figures (default: id)


@dataclass(frozen=True)
class Layout:
    experiment: str | None
    key: str  # "S2" (table name in headings, the paper CSV and file names)
    title: str
    label_columns: tuple[str, ...]
    key_columns: tuple[str, ...]  # run-frame columns whose values identify the row
    rows: tuple[RowSpec, ...]
    metrics: tuple[MetricSpec, ...]
    describe: Callable[[tuple], RowSpec]  # a row spec for a key that is not one of the paper's rows
    row_prefixes: tuple[str, ...] = ()  # config keys that legitimately differ between rows
    key_transform: Callable[[tuple], tuple] = field(default=lambda key: key)
    paper_dataset: str | None = "mvtec"  # the paper's dataset for this table (None: no dataset involved)
    mean_row: bool = False  # add the mean over the paper's rows (CIFAR-10 splits)
    definitions: str = DEFINITIONS
    has_paper: bool = True

    def key_of(self, run: pd.Series) -> tuple | None:
        values = tuple(run.get(c) for c in self.key_columns)
        if any(is_missing(v) for v in values):
            return None
        return self.key_transform(tuple(_plain(v) for v in values))

    def spec_for(self, key: tuple) -> RowSpec:
        for spec in self.rows:
            if spec.key == key:
                return spec
        return self.describe(key)


def _plain(value):
    if hasattr(value, "item") and not isinstance(value, tuple):
        value = value.item()
    return value


def _mark(flag) -> str:
    return CHECK if flag else DASH


# --- Table S2: query embedding x NMA x FJ --------------------------------------------------------------
_S2_QUERY = {"none": "w/o query", "query1": "1 query", "lqd_a": "layer-wise query"}


def _s2_row(index: int, design: str, nma: bool, fj: bool) -> RowSpec:
    labels = (
        str(index),
        _mark(design == "none"),
        _mark(design == "query1"),
        _mark(design == "lqd_a"),
        _mark(nma),
        _mark(fj),
    )
    name = " + ".join([_S2_QUERY[design], *(["NMA"] if nma else []), *(["FJ"] if fj else [])])
    return RowSpec(str(index), (design, nma, fj), labels, f"row {index}: {name}")


def _s2_describe(key: tuple) -> RowSpec:
    design, nma, fj = key
    layer = CHECK + f" ({design})" if str(design).startswith("lqd_") else DASH
    labels = ("", _mark(design == "none"), _mark(design == "query1"), layer, _mark(nma), _mark(fj))
    name = f"decoder={design}, NMA={bool(nma)}, FJ={bool(fj)}"
    return RowSpec(
        name, key, labels, name, paper_row=None, short=f"{design}{'+N' if nma else ''}{'+F' if fj else ''}"
    )


_S2_KEYS = [
    ("none", False, False),
    ("query1", False, False),
    ("query1", True, False),
    ("query1", False, True),
    ("query1", True, True),
    ("lqd_a", False, False),
    ("lqd_a", True, False),
    ("lqd_a", False, True),
    ("lqd_a", True, True),
]
_DECODER_PREFIXES = ("config.decoder", "config.model.nma", "config.model.fj", "config.model.decoder")

S2 = Layout(
    experiment="ablation",
    key="S2",
    title="Layer-wise query embedding, neighbor masked attention (NMA) and feature jittering (FJ)",
    label_columns=("#", "w/o query", "1 query", "layer-wise query", "NMA", "FJ"),
    key_columns=("config.decoder.design", "config.model.nma", "config.model.fj"),
    rows=tuple(_s2_row(i + 1, *k) for i, k in enumerate(_S2_KEYS)),
    metrics=(DET, LOC),
    describe=_s2_describe,
    row_prefixes=_DECODER_PREFIXES,
    key_transform=lambda k: (k[0], bool(k[1]), bool(k[2])),
)


# --- Table S3: LQD designs (a)-(f) x with/without NMA+FJ ------------------------------------------------
def _s3_row(design: str, both: bool) -> RowSpec:
    letter = design[-1]
    row_id = f"{letter}+nma+fj" if both else letter
    name = f"({letter}){' + NMA + FJ' if both else ''}"
    return RowSpec(
        row_id,
        (design, both, both),
        (f"({letter})", _mark(both), _mark(both)),
        name,
        short=f"{letter}{'+NF' if both else ''}",
    )


def _s3_describe(key: tuple) -> RowSpec:
    design, nma, fj = key
    name = f"decoder={design}, NMA={bool(nma)}, FJ={bool(fj)}"
    label = f"({design[-1]})" if str(design).startswith("lqd_") else str(design)
    return RowSpec(
        name,
        key,
        (label, _mark(nma), _mark(fj)),
        name,
        paper_row=None,
        short=f"{design}{'+N' if nma else ''}{'+F' if fj else ''}",
    )


S3 = Layout(
    experiment="lqd",
    key="S3",
    title="Design choice of the layer-wise query decoder (LQD)",
    label_columns=("design", "NMA", "FJ"),
    key_columns=("config.decoder.design", "config.model.nma", "config.model.fj"),
    rows=(
        RowSpec("vanilla", ("query1", False, False), ("vanilla", DASH, DASH), "vanilla transformer"),
        *(_s3_row(f"lqd_{x}", both) for x in "abcdef" for both in (False, True)),
    ),
    metrics=(DET, LOC),
    describe=_s3_describe,
    row_prefixes=_DECODER_PREFIXES,
    key_transform=lambda k: (k[0], bool(k[1]), bool(k[2])),
)


# --- Tables S4-S6, C.1 and C.4: one config key per row ------------------------------------------------------
def _single(names: dict[str, str], column: str) -> Callable[[tuple], RowSpec]:
    def describe(key: tuple) -> RowSpec:
        value = key[0]
        return RowSpec(
            str(value), key, (names.get(str(value), str(value)),), f"{column}={value}", paper_row=None
        )

    return describe


def _single_rows(names: dict[str, str], values: list) -> tuple[RowSpec, ...]:
    return tuple(RowSpec(str(v), (v,), (names[str(v)],), names[str(v)]) for v in values)


_LOSSES = {"mse": "MSE", "norm_mse": "Norm MSE", "cosine": "Cosine"}
S4 = Layout(
    experiment="loss",
    key="S4",
    title="Loss function",
    label_columns=("loss",),
    key_columns=("config.loss.name",),
    rows=_single_rows(_LOSSES, list(_LOSSES)),
    metrics=(DET, LOC),
    describe=_single(_LOSSES, "loss"),
    row_prefixes=("config.loss",),
)

_FREEZE = {"trainable": "Training", "frozen": "Freezing"}
S5 = Layout(
    experiment="freeze",
    key="S5",
    title="Trainable or frozen backbone",
    label_columns=("backbone",),
    key_columns=("config.backbone.frozen",),
    rows=(
        RowSpec("trainable", (False,), ("Training",), "Training (trainable backbone)"),
        RowSpec("frozen", (True,), ("Freezing",), "Freezing (frozen backbone)"),
    ),
    metrics=(DET, LOC),
    describe=_single({}, "backbone.frozen"),
    row_prefixes=("config.backbone.frozen",),
    key_transform=lambda k: (bool(k[0]),),
)

_BACKBONES = {
    "resnet18": "Res-18",
    "resnet34": "Res-34",
    "resnet50": "Res-50",
    "resnet101": "Res-101",
    "efficientnet_b0": "Eff-b0",
    "efficientnet_b2": "Eff-b2",
    "efficientnet_b4": "Eff-b4",
    "efficientnet_b6": "Eff-b6",
    "efficientnet_lite0": "Eff-lite0",
}
S6 = Layout(
    experiment="backbone",
    key="S6",
    title="Backbone architecture",
    label_columns=("backbone",),
    key_columns=("config.backbone.name",),
    rows=_single_rows(_BACKBONES, [b for b in _BACKBONES if b != "efficientnet_lite0"]),
    metrics=(BACKBONE, DET, LOC),
    describe=_single(_BACKBONES, "backbone"),
    row_prefixes=("config.backbone",),
)

_MODELS = {
    "uniad": "UniAD (ours)",
    "transformer": "Transformer (C.1)",
    "mlp": "MLP (C.1)",
    "cnn": "CNN (C.1)",
    "metaformer_ae": "Metaformer AE (seed 003)",
}
_OTHERS = [
    ("US", "US [3]"),
    ("PSVDD", "PSVDD [15]"),
    ("PaDiM", "PaDiM [5]"),
    ("CutPaste", "CutPaste [10]"),
    ("FCDD", "FCDD [11]"),
    ("MKD", "MKD [12]"),
    ("DRAEM", "DRAEM [16]"),
]
S7 = Layout(
    experiment="complexity",
    key="S7",
    title="Complexity: GFLOPs and learnable parameters at 224 px",
    label_columns=("method",),
    key_columns=("config.model.name",),
    rows=(
        RowSpec("uniad", ("uniad",), (_MODELS["uniad"],), _MODELS["uniad"], paper_row="Ours"),
        *(
            RowSpec(m, (m,), (_MODELS[m],), _MODELS[m], paper_row=None)
            for m in ("transformer", "mlp", "cnn", "metaformer_ae")
        ),
        *(RowSpec(k, ("paper:" + k,), (label,), label, paper_only=True) for k, label in _OTHERS),
    ),
    metrics=(GFLOPS, LEARNABLE),
    describe=_single(_MODELS, "model"),
    row_prefixes=("config.model",),
    paper_dataset=None,
    definitions=(
        "GFLOPs at 224 px, batch 1, 2 FLOPs per multiply-add; learnable params in millions; "
        "Δ = ours − paper (from the rounded values). The other methods are the paper's numbers only."
    ),
)

BASELINES = Layout(
    experiment="baselines",
    key="C.1",
    title="Reconstruction baselines (C.1) and the Metaformer autoencoder",
    label_columns=("model",),
    key_columns=("config.model.name",),
    rows=tuple(
        RowSpec(m, (m,), (_MODELS[m],), _MODELS[m])
        for m in ("mlp", "cnn", "transformer", "uniad", "metaformer_ae")
    ),
    metrics=(DET, LOC),
    describe=_single(_MODELS, "model"),
    row_prefixes=("config.model", "config.decoder"),
)


def _classes_key(key: tuple) -> tuple:
    classes = key[0] if isinstance(key[0], tuple | list) else (key[0],)
    return ("".join(str(c) for c in sorted(int(c) for c in classes)),)


_SPLITS = ["01234", "02468", "13579", "56789"]
CIFAR10 = Layout(
    experiment="cifar10",
    key="C.4",
    title="CIFAR-10 many-versus-many (five normal classes)",
    label_columns=("normal classes",),
    key_columns=("config.data.normal_classes",),
    rows=tuple(RowSpec(s, (s,), ("{" + s + "}",), "{" + s + "}") for s in _SPLITS),
    metrics=(DET,),
    describe=_single({}, "normal classes"),
    row_prefixes=("config.data.normal_classes",),
    key_transform=_classes_key,
    paper_dataset="cifar10",
    mean_row=True,
    definitions=(
        "Det. = image-level AUROC in % (the image score is the mean of the anomaly map); "
        "ours = mean ± sample std (ddof=1) over seeds (n = completed seeds); "
        "Δ = ours − paper in points (from the rounded values)."
    ),
)

LAYOUTS: dict[str, Layout] = {
    layout.experiment: layout for layout in (S2, S3, S4, S5, S6, S7, BASELINES, CIFAR10)
}
EXPERIMENT_ORDER = tuple(LAYOUTS)


def generic_layout(experiment: str | None, metrics: tuple[MetricSpec, ...]) -> Layout:
    """One row per distinct swept-override combination, ours only (no paper numbers)."""

    def describe(key: tuple) -> RowSpec:
        text = key[0] or "(defaults)"
        return RowSpec(text, key, (text,), text, paper_row=None, short=text)

    title = f"Runs of experiment={experiment}" if experiment else "Runs without an experiment"
    return Layout(
        experiment=experiment,
        key=f"exp-{experiment}" if experiment else "no-experiment",
        title=title,
        label_columns=("overrides",),
        key_columns=("swept",),
        rows=(),
        metrics=metrics,
        describe=describe,
        paper_dataset=None,
        has_paper=False,
        definitions=(
            "metrics in %, mean ± sample std (ddof=1) over seeds (n = completed seeds); "
            "rows: the overrides of the runs without the seed."
        ),
    )
