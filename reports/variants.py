"""Which runs of one row may be averaged (part of the aggregate stage): runs whose configs differ in
anything but the keys that change no number (``record.keys.NEUTRAL``, tagged ``average``) and the table's own
keys are split into variants, each a row of its own, labelled by the fewest keys that tell them apart.
"""

from __future__ import annotations

import pandas as pd

from reports.collect import is_missing, key_name


def value_text(value) -> str:
    if isinstance(value, tuple):
        return "[" + ",".join(value_text(v) for v in value) + "]"
    if is_missing(value):
        return "<absent>"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


# Keys named first in a variant's label (the rest only when needed to tell the variants apart).
LABEL_PRIORITY = (
    "config.profile_name",
    "config.data.name",
    "config.model.name",
    "config.backbone.name",
    "config.loss.name",
    "config.task",
    "config.trainer.epochs",
)


def split_variants(
    runs: pd.DataFrame, columns: list[str]
) -> tuple[list[tuple[str, pd.DataFrame]], list[str]]:
    """Runs of one row whose configs differ (beyond the ignored keys) are split into variants.

    Returns ``[(label, runs), …]`` (label "" when all agree) and the differing columns. A label names the
    fewest differing keys (priority keys first) that tell the variants apart, and how many more differ.
    """
    if runs.empty:
        return [("", runs)], []
    texts = runs[columns].map(value_text) if columns else pd.DataFrame(index=runs.index)
    differing = [c for c in columns if texts[c].nunique() > 1]
    if not differing:
        return [("", runs)], []
    ordered = [c for c in LABEL_PRIORITY if c in differing] + [
        c for c in differing if c not in LABEL_PRIORITY
    ]
    n_groups = texts[differing].apply(tuple, axis=1).nunique()
    k = next(
        k for k in range(1, len(ordered) + 1) if texts[ordered[:k]].apply(tuple, axis=1).nunique() == n_groups
    )
    shown, hidden = ordered[:k], len(ordered) - k

    def label(r) -> str:
        text = ", ".join(f"{key_name(c)}={r[c]}" for c in shown)
        return text + (f" (+{hidden} more key{'s' if hidden > 1 else ''})" if hidden else "")

    labels = texts.apply(label, axis=1)
    return [(text, runs[labels == text]) for text in sorted(set(labels))], ordered


def key_list(columns: list[str], limit: int = 8) -> str:
    names = [key_name(c) for c in columns]
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


GENERATED = "synthetic"  # the dataset that conf/data/synthetic.yaml's generator makes (data/synthetic.py)


def generated_roots(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs on generated data (``data.name`` synthetic, with its ``data.generator`` settings) are the same
    data wherever they were written: their ``data.root`` is replaced by "(generated)" so that it does not
    split their rows. Any other dataset is what its root holds: runs on different roots are different rows
    (records of older releases carry the generator's settings in every dataset's config)."""
    generator = [c for c in runs.columns if c.startswith("config.data.generator.")]
    if "config.data.root" not in runs.columns or "config.data.name" not in runs.columns or not generator:
        return runs
    made = runs[generator].map(lambda v: not is_missing(v)).any(axis=1) & (runs["config.data.name"] == GENERATED)
    if not made.any():
        return runs
    runs = runs.copy()
    runs.loc[made, "config.data.root"] = "(generated)"
    return runs

