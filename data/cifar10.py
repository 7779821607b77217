"""CIFAR-10 many-versus-many (UniAD supplementary sections B and C.4), read from the python batches.

Some classes are normal, the rest anomalous: train = the train-split images of the normal classes;
test = the whole test split, label 1 for the other classes. Masks are all zeros or all ones, and every
image belongs to the one category "cifar10". Images are upsampled 32 -> S with PIL's ``Image.ANTIALIAS``
(= LANCZOS) as the official ``datasets/cifar_dataset.py`` does, then ImageNet-normalised.

The batch files are pickles, and a pickle can name any function to call. They are read with
``BatchUnpickler``, which builds only plain containers, numbers, strings and numpy arrays: a file that
names anything else (``os.system``, ``numpy.load``, ...) is refused as unreadable, never run.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from data.errors import DatasetError
from data.mvtec import Sample
from data.paths import RootGuard
from data.transforms import to_input
from rules import BOOL, INT

BATCHES_DIR = "cifar-10-batches-py"
SPLIT_FILES = {"train": tuple(f"data_batch_{i}" for i in range(1, 6)), "test": ("test_batch",)}
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
RESAMPLE = Image.LANCZOS  # the official code's Image.ANTIALIAS
_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"


# the globals a CIFAR-10 batch (Python 2 or 3 pickle of a dict of lists, bytes and numpy arrays) needs
_ALLOWED = {
    ("builtins", n) for n in ("dict", "list", "tuple", "set", "frozenset", "bytes", "bytearray", "str", "int",
                              "float", "complex", "bool")
} | {
    ("__builtin__", n) for n in ("dict", "list", "tuple", "set", "frozenset", "bytearray", "str", "unicode", "int",
                                 "long", "float", "complex", "bool")
} | {
    ("_codecs", "encode"),  # bytes in protocol-2 pickles written by Python 3
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
}


class BatchUnpickler(pickle.Unpickler):
    """An unpickler that resolves only ``_ALLOWED`` globals (builtins' containers and numpy arrays)."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name} (a CIFAR-10 batch holds only arrays)")
        if module == "__builtin__":
            module, name = "builtins", {"unicode": "str", "long": "int"}.get(name, name)
        return super().find_class(module, name)


def batches_dir(root: str | os.PathLike) -> Path:
    """The folder of the batch files: ``<root>/cifar-10-batches-py``, or ``root`` if it is that folder."""
    base = Path(root).expanduser()
    if (base / BATCHES_DIR).is_dir():
        return base / BATCHES_DIR
    if base.name == BATCHES_DIR or any((base / f).is_file() for files in SPLIT_FILES.values() for f in files):
        return base
    return base / BATCHES_DIR


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise DatasetError(
            f"missing CIFAR-10 file {path}: extract {_URL} so that {BATCHES_DIR}/ lies in data.root"
        )
    try:
        with open(path, "rb") as f:
            entry = BatchUnpickler(f, encoding="bytes").load()
        data = entry.get(b"data", entry.get("data"))
        labels = entry.get(b"labels", entry.get("labels"))
        data = np.asarray(data, dtype=np.uint8)
        labels = np.asarray(labels, dtype=np.int64)
    except Exception as error:  # any unpickling or format problem means the same thing: a bad file
        raise DatasetError(f"unreadable CIFAR-10 batch {path} ({error}): download it again") from None
    if data.ndim != 2 or data.shape[1] != 3072 or labels.shape != (data.shape[0],):
        raise DatasetError(
            f"malformed CIFAR-10 batch {path}: data {data.shape}, labels {labels.shape} "
            "(expected Nx3072 and N): download it again"
        )
    return data, labels


def load_split(root: str | os.PathLike, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All images (N x 32 x 32 x 3 uint8, RGB) and class labels (N,) of the train or test split."""
    if split not in SPLIT_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = batches_dir(root)
    batches = [_read_batch(folder / name) for name in SPLIT_FILES[split]]
    data = np.concatenate([b[0] for b in batches])
    labels = np.concatenate([b[1] for b in batches])
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels  # rows are R, G, B planes


class Cifar10ManyVsMany(Dataset):
    """CIFAR-10 as dicts: image [3,S,S], mask [1,S,S] (all 0 or all 1), label, category, path."""

    has_masks = True  # each mask is the image's label (all zeros or all ones)
    RULES = {"image_size": INT(32), "normal_classes": INT(0, 9, items=True), "follow_links": BOOL,
             "resize": INT(32, null=True), "outlayers": INT(1, 5, items=True)}

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        normal_classes: list[int],
        image_size: int = 224,
        categories: list[str] | None = None,
        follow_links: bool = False,
    ):
        if categories is not None:
            raise DatasetError(f"data.categories={list(categories)}: CIFAR-10 has the one category 'cifar10'; "
                               "give null and choose data.normal_classes")
        normal = sorted({int(c) for c in normal_classes})
        if not normal or normal[0] < 0 or normal[-1] > 9 or len(normal) == 10:
            raise ValueError(f"normal_classes must be some, not all, of 0..9; got {list(normal_classes)}")
        guard = RootGuard(root, follow_links)
        for name in SPLIT_FILES.get(split, ()):
            guard.check(batches_dir(root) / name)
        images, classes = load_split(root, split)
        if split == "train":
            keep = np.isin(classes, normal)
            images, classes = images[keep], classes[keep]
            if not len(images):
                raise DatasetError(f"no training images of classes {normal} in {batches_dir(root)}")
        self.split = split
        self.image_size = int(image_size)
        self.normal_classes = normal
        self.images = images
        self.classes = classes
        self.labels = (~np.isin(classes, normal)).astype(np.int64)
        self.categories = ["cifar10"]
        self.root = str(batches_dir(root))
        self._files = [str(Path(self.root) / name) for name in SPLIT_FILES[split]]
        self.samples = [Sample(self._name(i), "cifar10", "good" if not label else CLASSES[self.classes[i]],
                               int(label), None) for i, label in enumerate(self.labels)]

    def _name(self, index: int) -> str:
        return f"cifar10/{self.split}/{index:05d}_{CLASSES[self.classes[index]]}"

    def files(self) -> list[str]:
        """The batch files of the split."""
        return list(self._files)

    def verify(self, check=None) -> dict:
        """Nothing left to check: the batches were read completely when the dataset was built."""
        return {}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        label = int(self.labels[index])
        size = self.image_size
        return {
            "image": to_input(Image.fromarray(self.images[index]), size, RESAMPLE),
            "mask": torch.full((1, size, size), float(label)),
            "label": label,
            "category": "cifar10",
            "path": self._name(index),
        }
