"""Reader for the MVTec AD folder layout (the real dataset and the synthetic one share it).

Layout: ``<root>/<category>/train/good/*.png``, ``<category>/test/{good,<defect>}/*.png`` and
``<category>/ground_truth/<defect>/<stem>_mask.png``. ``scan`` validates the whole tree up front, so a
bad dataset stops the job with a one-line ``DatasetError`` before any training. Unified mode reads all
categories (``categories=None``); separate mode reads the listed ones.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from data.errors import DatasetError
from data.paths import RESERVED, RootGuard, category_problem  # noqa: F401 (re-exported)
from data.transforms import check_image, load_image, load_mask, shown_size
from rules import BOOL, INT, NAMES

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
LAYOUT = "<category>/{train/good,test/<defect>,ground_truth/<defect>/<stem>_mask.png}"


# data.categories of a reader: null (every category) or a list of plain names
CATEGORY_NAMES = NAMES(category_problem, null=True)


@dataclass(frozen=True)
class Sample:
    """One image of the tree: its file, class, defect type ('good' if normal), label 0/1 and mask file."""

    path: str
    category: str
    defect: str
    label: int
    mask_path: str | None


def _root(root: str | os.PathLike) -> Path:
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetError(
            f"missing dataset root {path}: expected the MVTec AD layout {LAYOUT}; check data.root"
        )
    return path


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _folder(path: Path) -> Path:
    if not path.is_dir():
        raise DatasetError(f"missing folder {path}: expected the MVTec AD layout {LAYOUT}; check data.root")
    return path


def list_categories(root: str | os.PathLike) -> list[str]:
    """Sorted names of the category folders of ``root``: subfolders with ``train/`` or ``test/`` (a class
    with one of them only is then named by the scan, never dropped)."""
    base = _root(root)
    return sorted(p.name for p in base.iterdir()
                  if not p.name.startswith(".") and ((p / "train").is_dir() or (p / "test").is_dir()))


def _categories(base: Path, categories: list[str] | None) -> list[str]:
    known = list_categories(base)
    if categories is None:
        if not known:
            raise DatasetError(
                f"no categories in {base}: expected subfolders laid out as {LAYOUT}; check data.root"
            )
        categories = known
    for name in categories:
        problem = category_problem(name)
        if problem:
            raise DatasetError(f"category {name!r} of {base} {problem}")
    unknown = [c for c in categories if c not in known]
    if unknown:
        raise DatasetError(
            f"unknown category {unknown[0]!r} in {base}: known categories are {', '.join(known) or 'none'}; "
            "check data.categories"
        )
    if not categories:
        raise DatasetError(f"empty category list for {base}: pass null (all categories) or some of {known}")
    return sorted(set(categories))


def _scan_train(base: Path, category: str, guard: RootGuard) -> list[Sample]:
    folder = _folder(base / category / "train" / "good")
    samples = [Sample(str(p), category, "good", 0, None) for p in guard.check_all(_images(folder))]
    if not samples:
        raise DatasetError(f"no training images in {folder}: the train set of {category!r} is empty")
    return samples


def _scan_test(base: Path, category: str, guard: RootGuard) -> list[Sample]:
    test = _folder(base / category / "test")
    samples = []
    for defect_dir in sorted(p for p in test.iterdir() if p.is_dir() and not p.name.startswith(".")):
        defect = defect_dir.name
        for image in guard.check_all(_images(defect_dir)):
            if defect == "good":
                samples.append(Sample(str(image), category, defect, 0, None))
                continue
            mask = base / category / "ground_truth" / defect / f"{image.stem}_mask.png"
            if not mask.is_file():
                raise DatasetError(
                    f"missing mask {mask} for defective image {image}: add the mask or remove the image"
                )
            guard.check(mask)
            size, mask_size = shown_size(image), shown_size(mask)
            if size != mask_size:
                raise DatasetError(
                    f"mask {mask} is {mask_size[0]}x{mask_size[1]} but its image {image} is "
                    f"{size[0]}x{size[1]}: masks must have their image's size"
                )
            samples.append(Sample(str(image), category, defect, 1, str(mask)))
    wanted = ((0, f"normal test images in {test / 'good'}"), (1, f"defective test images in {test}/<defect>"))
    for label, what in wanted:
        if not any(s.label == label for s in samples):
            raise DatasetError(f"category {category!r} has no {what}: both are needed for its metrics "
                               "(restore the folder or leave the category out with data.categories)")
    return samples


def scan(root: str | os.PathLike, categories: list[str] | None, split: str,
         follow_links: bool = False) -> list[Sample]:
    """Validated, deterministically ordered samples of ``split`` ('train' or 'test') for ``categories``.

    ``categories=None`` takes every category folder (unified mode). Raises ``DatasetError`` naming the
    path for a missing root or folder, an unknown category, a defective image without its mask, a mask
    whose size differs from its image, an empty train set, or a file or class folder that resolves outside
    ``root`` (unless ``follow_links``).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    base = _root(root)
    scan_one = _scan_train if split == "train" else _scan_test
    guard = RootGuard(base, follow_links)
    chosen = [guard.check(base / c).name for c in _categories(base, categories)]
    return [sample for category in chosen for sample in scan_one(base, category, guard)]


def verify_files(paths: list[str], check: Callable[[str], object] = check_image) -> dict[str, object]:
    """``{path: check(path)}`` for every path; ``check`` raises ``DatasetError`` for an unreadable file."""
    return {path: check(path) for path in paths}


class MVTecDataset(Dataset):
    """MVTec-AD-layout images as dicts: image [3,S,S], mask [1,S,S] (0/1), label, category, path
    (``data.protocol.AnomalyDataset``; ``conf/data/mvtec.yaml``)."""

    has_masks = True  # every defective test image has its mask (``scan`` requires it)
    RULES = {"image_size": INT(32), "categories": CATEGORY_NAMES, "follow_links": BOOL,
             "resize": INT(32, null=True), "outlayers": INT(1, 5, items=True)}

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        categories: list[str] | None = None,
        image_size: int = 224,
        follow_links: bool = False,
    ):
        self.root = str(root)
        self.split = split
        self.image_size = int(image_size)
        self.samples = scan(root, categories, split, follow_links)
        self.categories = sorted({s.category for s in self.samples})

    def __len__(self) -> int:
        return len(self.samples)

    def files(self) -> list[str]:
        """Every file the dataset reads (images, then masks), once each, in sample order."""
        paths = [s.path for s in self.samples] + [s.mask_path for s in self.samples if s.mask_path]
        return list(dict.fromkeys(paths))

    def verify(self, check: Callable[[str], object] = check_image) -> dict[str, object]:
        """Decode every image and mask completely (``scan`` reads headers only); return {path: check(path)}.

        ``check`` defaults to ``data.transforms.check_image`` (its result is the file's sha256); it raises
        ``DatasetError`` naming the first unreadable file (truncated, empty, not an image).
        """
        return verify_files(self.files(), check)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        size = self.image_size
        if sample.mask_path is None:
            mask = torch.zeros(1, size, size)
        else:
            mask = load_mask(sample.mask_path, size)
        return {
            "image": load_image(sample.path, size),
            "mask": mask,
            "label": sample.label,
            "category": sample.category,
            "path": sample.path,
        }
