"""What a dataset reader provides, so the job needs to know nothing else about it (docs/configuration.md).

A reader is a class named by ``_target_`` in ``conf/data/<name>.yaml``; the job builds the train and test
sets as ``instantiate(cfg.data, split="train" | "test")``, passing every key of the node except
``CONFIG_ONLY_KEYS`` (keys that configure other nodes through interpolation). The feature cache keys on the
node's values and the content of ``files()``, the readability check calls ``verify``, evaluation groups by
the samples' categories and skips the pixel metrics when ``has_masks`` is false. Adding a dataset is its
module and its YAML file; the allowed values of its keys are declared beside its class (``RULES``, the
``rules`` package) and checked before anything is built.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

# keys of a data node that are not constructor arguments: its name, the backbone stages it asks for
# (``backbone.outlayers: ${data.outlayers}``) and its image score (``eval.score: ${data.score}``)
CONFIG_ONLY_KEYS = ("name", "outlayers", "score")


class SampleLike(Protocol):
    """One test or train item without its pixels (``data.mvtec.Sample``)."""

    path: str          # the image file (or a stable name for images held in memory)
    category: str      # its class; metrics are computed per category and averaged
    defect: str        # "good" for a normal item, else the defect type
    label: int         # 0 normal, 1 anomalous
    mask_path: str | None


@runtime_checkable
class AnomalyDataset(Protocol):
    """A train or test split, as ``data.mvtec.MVTecDataset``.

    ``__getitem__`` returns ``{"image": [3,S,S] normalised, "mask": [1,S,S] 0/1, "label": int,
    "category": str, "path": str}``.
    """

    samples: Sequence[SampleLike]   # one per item, in item order
    categories: list[str]           # sorted category names present
    has_masks: bool                 # False: no ground-truth masks (pixel metrics are skipped)
    root: str                       # the folder read (the file index of its files lives under its name)

    def files(self) -> list[str]:
        """Every file the dataset reads (their content keys the feature cache)."""

    def verify(self, check: Callable[[str], object]) -> dict[str, object]:
        """Read every file completely before training: ``check(path)`` decodes an image (raising
        ``DatasetError`` naming it); returns ``{path: check(path)}`` for the files checked."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict: ...
