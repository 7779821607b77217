"""What the readers of the public benchmarks share (VisA, Real-IAD, MVTec AD 2, LOCO, BTAD, MPDD, 3D-AD).

A reader scans its dataset as the authors distribute it into ``data.mvtec.Sample`` records, checks the
whole layout before training (one-line ``DatasetError`` naming the path and what to do), and compares its
per-class counts and class list with the official release's (``check_counts``, ``check_classes``: a
warning naming both, an error with ``strict_counts``). Category names and file paths taken from the
layout or a split file go through ``data.paths`` (``check_category``, ``RootGuard``): a category is a
plain folder name, and a file outside ``data.root`` is refused unless ``data.follow_links=true``.
``ReaderDataset`` then serves items exactly as ``MVTecDataset`` does.

Two optional per-image annotations feed evaluation's extra metrics (docs/datasets.md):
``groups`` (a sample id per image: Real-IAD's five views of one object form one sample) and
``subsets`` (the subsets an image belongs to: MVTec LOCO's logical and structural anomalies, each with
the normal images).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from data.errors import DatasetError
from data.mvtec import CATEGORY_NAMES, IMAGE_EXTENSIONS, Sample, verify_files
from data.paths import RootGuard, check_category
from data.transforms import check_image, load_image, load_mask, read_mask, shown_size
from rules import BOOL, INT

SPLITS = ("train", "test")


class CountMismatchWarning(UserWarning):
    """A class of a dataset holds another number of images than the official release."""


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    return split


def root_dir(root: str | os.PathLike, dataset: str, layout: str) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(f"missing {dataset} root {path}: expected {layout}; check data.root")
    return path


def folder(path: Path, dataset: str, layout: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"missing folder {path}: expected the {dataset} layout {layout}; check data.root")
    return path


def is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def images_in(path: Path) -> list[Path]:
    """Image files of ``path`` (any case of extension), sorted; other files and hidden ones are ignored."""
    return sorted(p for p in path.iterdir() if is_image(p))


def subfolders(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def image_size(path: Path) -> tuple[int, int]:
    """Width and height as shown (EXIF orientation applied) from the header; an unreadable file is a
    one-line error (``data.transforms.shown_size``)."""
    return shown_size(path)


def check_mask_size(image: Path, mask: Path) -> None:
    size, mask_size = image_size(image), image_size(mask)
    if size != mask_size:
        raise DatasetError(
            f"mask {mask} is {mask_size[0]}x{mask_size[1]} but its image {image} is {size[0]}x{size[1]}: "
            "masks must have their image's size"
        )


def find_mask(mask_dir: Path, stem: str, names: Iterable[str]) -> Path | None:
    """The image file in ``mask_dir`` whose stem is one of ``names`` (formatted with ``stem``), any extension."""
    if not mask_dir.is_dir():
        return None
    by_stem = {p.stem: p for p in images_in(mask_dir)}
    for name in names:
        hit = by_stem.get(name.format(stem=stem))
        if hit is not None:
            return hit
    return None


def select_categories(known: list[str], requested: list[str] | None, where: Path, dataset: str) -> list[str]:
    """``requested`` (None = every known category: unified mode), each checked against ``known``; every
    known name must be a plain category name (``data.paths.check_category``, naming ``where``)."""
    for name in known:
        check_category(name, where)
    if not known:
        raise DatasetError(f"no {dataset} categories in {where}: check data.root")
    if requested is None:
        return sorted(known)
    if not requested:
        raise DatasetError(f"empty category list for {where}: pass null (all categories) or some of {known}")
    unknown = [c for c in requested if c not in known]
    if unknown:
        raise DatasetError(
            f"unknown {dataset} category {unknown[0]!r} in {where}: known categories are "
            f"{', '.join(sorted(known))}; check data.categories"
        )
    return sorted(set(requested))


def found_counts(samples: Iterable[Sample]) -> dict[str, tuple[int, int]]:
    """{category: (normal images, anomalous images)}."""
    out: dict[str, list[int]] = {}
    for s in samples:
        out.setdefault(s.category, [0, 0])[s.label] += 1
    return {c: (n[0], n[1]) for c, n in out.items()}


def count_mismatch(message: str, strict: bool, stacklevel: int = 2) -> None:
    """A release's counts or classes not found: ``DatasetError`` under ``data.strict_counts=true``, else a
    ``CountMismatchWarning`` (``stacklevel`` counts from this function's caller)."""
    if strict:
        raise DatasetError(message + " (data.strict_counts=false only warns)")
    warnings.warn(message + " (data.strict_counts=true makes this an error)", CountMismatchWarning,
                  stacklevel=stacklevel + 1)


def check_counts(dataset: str, split: str, found: Mapping[str, tuple[int, int]],
                 official: Mapping[str, tuple[int, int]], strict: bool, release: str) -> None:
    """Compare ``found`` with the ``official`` (normal, anomalous) counts of ``release`` per category.

    A mismatch (a partial download, a wrong split file) warns naming both counts; ``strict`` raises
    ``DatasetError`` instead. Categories without an official count are not compared.
    """
    for category in sorted(found):
        want = official.get(category)
        if want is None or tuple(found[category]) == tuple(want):
            continue
        (n, a), (wn, wa) = found[category], want
        message = (f"{dataset} {category} {split}: found {n} normal + {a} anomalous images, the official "
                   f"{release} has {wn} + {wa}; a partial download or another split file?")
        count_mismatch(message, strict, stacklevel=4)


def check_classes(dataset: str, where: Path | str, known: Iterable[str], release: Iterable[str], strict: bool,
                  release_name: str) -> None:
    """Every class of the ``release`` is in ``known`` (unified mode only: a selection is checked by
    ``select_categories``). A missing one (a partial download, a split file without its rows) warns
    naming it; ``strict`` raises ``DatasetError`` instead."""
    missing = sorted(set(release) - set(known))
    if not missing:
        return
    message = (f"{dataset} in {where}: {len(missing)} class{'es' if len(missing) > 1 else ''} of the {release_name} "
               f"missing ({', '.join(missing)}); a partial download or another split file?")
    count_mismatch(message, strict, stacklevel=4)


def load_union_mask(paths: list[str], size: int) -> torch.Tensor:
    """The union (> 0) of several mask files, [1, size, size] 0/1 (MVTec LOCO: one file per defect)."""
    union = None
    for path in paths:
        values = np.asarray(read_mask(path)) > 0
        union = values if union is None else union | values
    mask = Image.fromarray(union.astype(np.uint8) * 255, mode="L").resize((size, size), Image.NEAREST)
    return torch.from_numpy(np.asarray(mask) > 0).float().unsqueeze(0)


class ReaderDataset(Dataset):
    """Images of one split as dicts: image [3,S,S], mask [1,S,S] (0/1), label, category, path.

    Subclasses set ``samples`` (``Sample`` records) and optionally ``groups`` and ``subsets``; one whose
    ``mask_path`` names a folder of masks (MVTec LOCO) overrides ``mask_files``: several masks are united.
    """

    has_masks = True
    RULES = {"image_size": INT(32), "categories": CATEGORY_NAMES, "follow_links": BOOL,
             "resize": INT(32, null=True), "outlayers": INT(1, 5, items=True)}

    def __init__(self, root: str | os.PathLike, split: str, image_size: int):
        self.root = str(root)
        self.split = check_split(split)
        self.image_size = int(image_size)
        self.samples: list[Sample] = []
        self.groups: list[str] | None = None
        self.subsets: list[tuple[str, ...]] | None = None

    @property
    def categories(self) -> list[str]:
        return sorted({s.category for s in self.samples})

    def __len__(self) -> int:
        return len(self.samples)

    def mask_files(self, sample: Sample) -> list[str]:
        """The mask files of ``sample`` (none for a normal image)."""
        return [sample.mask_path] if sample.mask_path else []

    def files(self) -> list[str]:
        """Every file the dataset reads (images, then masks), once each, in sample order."""
        masks = [m for s in self.samples for m in self.mask_files(s)]
        return list(dict.fromkeys([s.path for s in self.samples] + masks))

    def verify(self, check: Callable[[str], object] = check_image) -> dict[str, object]:
        """Decode every image and mask completely; {path: check(path)} (see ``MVTecDataset.verify``)."""
        return verify_files(self.files(), check)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        size = self.image_size
        masks = self.mask_files(sample)
        if not masks:
            mask = torch.zeros(1, size, size)
        elif len(masks) == 1:
            mask = load_mask(masks[0], size)
        else:
            mask = load_union_mask(masks, size)
        return {"image": load_image(sample.path, size), "mask": mask, "label": sample.label,
                "category": sample.category, "path": sample.path}


def scan_folders(base: Path, category: str, split: str, *, dataset: str, layout: str, train: str,
                 test: str, normal: str, mask_of: Callable[[str, Path], Path | None],
                 guard: RootGuard, images_sub: str = "", skip: tuple[str, ...] = ()) -> list[Sample]:
    """Samples of a class laid out by folder, as MVTec AD and its kin are.

    ``train`` (relative to ``base/category``) holds the normal training images; ``test`` holds one folder
    per defect type, ``normal`` naming the normal one (its images label 0, every other folder's label 1,
    whatever its mask holds); ``images_sub`` is a subfolder of each (MVTec 3D-AD's ``rgb``); ``skip`` lists
    folders of ``test`` that are not defect types. ``mask_of(defect, image)`` finds an anomalous image's
    mask; a missing mask, an empty train set, a test set without normal or without anomalous images
    (as ``data.mvtec``), a mask of another size, or a file ``guard`` refuses (outside the root) is a one-line
    error.
    """
    where = base / category
    if split == "train":
        path = class_folder(where / train / images_sub if images_sub else where / train, category, dataset, layout)
        samples = [Sample(str(p), category, normal, 0, None) for p in guard.check_all(images_in(path))]
        if not samples:
            raise DatasetError(f"no training images in {path}: the train set of {category!r} is empty")
        return samples
    test_dir = class_folder(where / test, category, dataset, layout)
    samples = []
    for defect_dir in subfolders(test_dir):
        defect = defect_dir.name
        if defect in skip:
            continue
        images = images_in(folder(defect_dir / images_sub, dataset, layout) if images_sub else defect_dir)
        for image in guard.check_all(images):
            if defect == normal:
                samples.append(Sample(str(image), category, defect, 0, None))
                continue
            mask = mask_of(defect, image)
            if mask is None:
                raise DatasetError(f"missing mask for defective image {image} ({dataset} layout {layout}): "
                                   "add the mask or remove the image")
            guard.check(mask)
            if mask.is_file():
                check_mask_size(image, mask)
            samples.append(Sample(str(image), category, defect, 1, str(mask)))
    for label, what in ((0, f"normal test images in {test_dir / normal}"), (1, f"anomalous test images in {test_dir}")):
        if not any(s.label == label for s in samples):
            raise DatasetError(f"{dataset} class {category!r} has no {what}: both are needed for its metrics "
                               "(restore the folder or leave the class out with data.categories)")
    return samples


def class_folder(path: Path, category: str, dataset: str, layout: str) -> Path:
    """``path``, a folder every class needs: a class that has the other split's folder but not this one is
    named (never dropped)."""
    if not path.is_dir():
        raise DatasetError(f"missing folder {path}: {dataset} class {category!r} needs it (layout {layout}); "
                           "restore it or leave the class out with data.categories")
    return path


def list_classes(base: Path, *markers: str) -> list[str]:
    """Subfolders of ``base`` holding any of ``markers`` (a category's train or test folder)."""
    return sorted(p.name for p in subfolders(base) if any((p / m).is_dir() for m in markers))


def release_counts(table: Mapping[str, tuple[int, int, int]]) -> dict[str, dict[str, tuple[int, int]]]:
    """``OFFICIAL`` from ``{category: (train, test normal, test anomalous)}``."""
    return {"train": {c: (n[0], 0) for c, n in table.items()}, "test": {c: (n[1], n[2]) for c, n in table.items()}}


class FolderBenchmark(ReaderDataset):
    """A benchmark laid out by folder per class (``scan_folders``); subclasses name the layout.

    ``OFFICIAL`` maps a split to ``{category: (normal, anomalous)}`` of the release (empty where no count
    could be sourced: nothing is compared then); its classes are the release's class list, compared in
    unified mode (``check_classes``).
    """

    NAME = ""
    LAYOUT = ""
    TRAIN = "train/good"
    TEST = "test"
    NORMAL = "good"
    IMAGES_SUB = ""
    SKIP: tuple[str, ...] = ()
    RELEASE = "release"
    OFFICIAL: Mapping[str, Mapping[str, tuple[int, int]]] = {}
    RULES = {"strict_counts": BOOL}

    def __init__(self, root: str | os.PathLike, split: str, categories: list[str] | None = None,
                 image_size: int = 224, strict_counts: bool = False, follow_links: bool = False):
        super().__init__(root, split, image_size)
        base = root_dir(root, self.NAME, self.LAYOUT)
        self.guard = guard = RootGuard(base, follow_links)
        known = list_classes(base, self.TRAIN.split("/")[0], self.TEST.split("/")[0])
        chosen = select_categories(known, list(categories) if categories is not None else None, base, self.NAME)
        for category in chosen:
            guard.check(base / category)
            self.samples += scan_folders(
                base, category, self.split, dataset=self.NAME, layout=self.LAYOUT, train=self.TRAIN,
                test=self.TEST, normal=self.NORMAL, images_sub=self.IMAGES_SUB, skip=self.SKIP, guard=guard,
                mask_of=lambda defect, image, c=category: self.mask_of(base / c, defect, image))
        official = self.OFFICIAL.get(self.split, {})
        check_counts(self.NAME, self.split, found_counts(self.samples), official, bool(strict_counts), self.RELEASE)
        if categories is None:
            check_classes(self.NAME, base, known, official, bool(strict_counts), self.RELEASE)

    def mask_of(self, category_dir: Path, defect: str, image: Path) -> Path | None:
        """The mask of the anomalous ``image`` of ``defect`` (None when it is missing)."""
        raise NotImplementedError
