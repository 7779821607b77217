"""Your own data (``data=folder``, docs/datasets.md): a dataset that is not in the MVTec AD layout.

Per category ``<root>/<category>/``: a folder of normal training images (``train_dir``) and test images
labelled either by folder (``<test_dir>/good/*`` normal, ``<test_dir>/<anything else>/*`` anomalous) or,
when ``labels`` names a CSV file in the category folder, by its rows ``path,label[,mask]`` (paths relative
to the category folder; label 0 normal, 1 anomalous). Masks are optional: in folder mode they are looked
up as ``<mask_dir>/<defect>/<stem>.*`` or ``<stem>_mask.*``; in CSV mode they are the ``mask`` column.
Either every anomalous test image has a mask or none has: pixel metrics are then computed or skipped
(``has_masks``), never computed from invented masks. Every problem stops the job in one line
(``DatasetError``) before training. Images are read by ``data.transforms`` like every other dataset.
A file or category folder that resolves outside ``root`` (a CSV path with ``../``, an absolute path, a
symlink) is refused unless ``follow_links`` (``data.paths.RootGuard``).

The CSV is UTF-8 (a byte-order mark is allowed). A row repeated exactly is counted once (with a warning);
an image listed twice with different labels or masks is refused. Masks saved as JPEG get a warning: lossy
compression spreads faint values around a mask's edge, which read as > 0 make it larger than drawn.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

from data.errors import DatasetError
from data.mvtec import IMAGE_EXTENSIONS, MVTecDataset, Sample
from data.paths import RootGuard, category_problem
from data.transforms import shown_size

log = logging.getLogger(__name__)

CSV_COLUMNS = ("path", "label", "mask")


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetError(f"missing folder {path} ({what}): create it or check data.root and data.{what}")
    return path


def _checked(image: Path, mask: Path | None) -> tuple[str, str | None]:
    size = shown_size(image)
    if mask is not None:
        mask_size = shown_size(mask)
        if mask_size != size:
            raise DatasetError(
                f"mask {mask} is {mask_size[0]}x{mask_size[1]} but its image {image} is {size[0]}x{size[1]}: "
                "masks must have their image's size"
            )
    return str(image), None if mask is None else str(mask)


def _find_mask(mask_root: Path, defect: str, stem: str) -> Path | None:
    folder = mask_root / defect
    if not folder.is_dir():
        return None
    for name in (stem, f"{stem}_mask"):
        for path in _images(folder):
            if path.stem == name:
                return path
    return None


def _scan_train(base: Path, category: str, train_dir: str, guard: RootGuard) -> list[Sample]:
    folder = _folder(base / category / train_dir, "train_dir")
    images = guard.check_all(_images(folder))
    if not images:
        held = [p.name for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".") and _images(p)]
        hint = (f"; its images are in {held[0]}/ (the MVTec AD layout?): set "
                f"data.train_dir={Path(train_dir, held[0]).as_posix()}") if held else ""
        raise DatasetError(f"no training images in {folder}: the normal class of {category!r} is empty{hint}")
    return [Sample(_checked(p, None)[0], category, "good", 0, None) for p in images]


def _scan_test_folders(base: Path, category: str, test_dir: str, mask_dir: str | None,
                       guard: RootGuard) -> list[Sample]:
    test = _folder(base / category / test_dir, "test_dir")
    mask_root = base / category / mask_dir if mask_dir else None
    samples = []
    for sub in sorted(p for p in test.iterdir() if p.is_dir() and not p.name.startswith(".")):
        label = 0 if sub.name == "good" else 1
        for image in guard.check_all(_images(sub)):
            mask = _find_mask(mask_root, sub.name, image.stem) if label and mask_root is not None else None
            if mask is not None:
                guard.check(mask)
            path, mask_path = _checked(image, mask)
            samples.append(Sample(path, category, sub.name, label, mask_path))
    return samples


def _scan_test_csv(base: Path, category: str, labels: str, guard: RootGuard) -> list[Sample]:
    folder = base / category
    table = guard.check(folder / labels, "data.labels")
    if not table.is_file():
        raise DatasetError(f"missing label file {table}: write it (columns path,label[,mask]) or set data.labels=null")
    try:
        with open(table, newline="", encoding="utf-8-sig") as handle:  # -sig: a byte-order mark is no header
            rows = list(csv.reader(handle))
    except UnicodeDecodeError as error:
        raise DatasetError(f"{table} is not UTF-8 text (byte {error.start}: {error.reason}): save it as UTF-8") \
            from None
    header = [c.strip().lower() for c in rows[0]] if rows else []
    if header[:2] != ["path", "label"] or len(header) > 3 or (len(header) == 3 and header[2] != "mask"):
        raise DatasetError(f"{table}: the header must be path,label or path,label,mask, got {','.join(header)}")
    samples = []
    seen: dict[str, tuple[int, tuple]] = {}  # image -> (line, (label, mask)) of its first row
    repeated = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        cells = [c.strip() for c in row] + [""] * (len(header) - len(row))
        if cells[1] not in ("0", "1"):
            raise DatasetError(
                f"{table} line {line}: label {cells[1]!r} is not 0 or 1 (0 = normal, 1 = anomalous)"
            )
        label = int(cells[1])
        image = guard.check(folder / cells[0], f"{table} line {line} (column path)")
        if not cells[0] or not image.is_file():
            raise DatasetError(f"{table} line {line}: image {image} does not exist: fix the path column")
        mask = None
        if len(header) == 3 and cells[2]:
            mask = guard.check(folder / cells[2], f"{table} line {line} (column mask)")
            if not mask.is_file():
                raise DatasetError(f"{table} line {line}: mask {mask} does not exist: fix the mask column")
            if label == 0:
                raise DatasetError(f"{table} line {line}: a normal image (label 0) has a mask: remove it")
        key = os.path.realpath(image)
        entry = (label, None if mask is None else os.path.realpath(mask))
        if key in seen:
            first, before = seen[key]
            if before[0] != label:
                raise DatasetError(f"{table} lines {first} and {line}: image {image} is listed as both normal and "
                                   "anomalous: keep one row")
            if before != entry:
                raise DatasetError(f"{table} lines {first} and {line}: image {image} is listed with two masks: "
                                   "keep one row")
            repeated.append(line)
            continue
        seen[key] = (line, entry)
        path, mask_path = _checked(image, mask)
        samples.append(Sample(path, category, "good" if label == 0 else "anomalous", label, mask_path))
    if repeated:
        log.warning(f"{table}: line{'s' if len(repeated) > 1 else ''} {', '.join(map(str, repeated))} repeat an "
                    "earlier row: each image is counted once")
    return samples


def scan(root: str | os.PathLike, categories: list[str] | None, split: str, *, train_dir: str,
         test_dir: str, labels: str | None, mask_dir: str | None, follow_links: bool = False) -> list[Sample]:
    """Validated, deterministically ordered samples of ``split`` ('train' or 'test') for ``categories``.

    ``categories=None`` takes every subfolder of ``root`` that holds ``train_dir``. Raises
    ``DatasetError`` for a missing folder or label file, an empty class (no training images, no normal
    or no anomalous test image), an unreadable image or mask, a label other than 0/1, masks given
    for only some anomalous images, and a file outside ``root`` (unless ``follow_links``).
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    base = Path(root).expanduser()
    if not base.is_dir():
        raise DatasetError(f"missing dataset root {base}: set data.root to the folder of the category folders")
    # a folder with its test set but no train_dir is a category too: named by the scan, never dropped
    test_marker = labels or test_dir
    known = sorted(p.name for p in base.iterdir() if not p.name.startswith(".")
                   and ((p / train_dir).is_dir() or (p / test_marker).exists()))
    if categories is None:
        if not known:
            raise DatasetError(f"no categories in {base}: expected <category>/{train_dir}/ folders of normal images")
        categories = known
    for category in categories:
        problem = category_problem(category)
        if problem:
            raise DatasetError(f"category {category!r} of {base} {problem}")
        if category not in known:
            _folder(base / category / train_dir, "train_dir")  # a category folder without its train_dir
            raise DatasetError(f"missing folder {base / category}: {category!r} is not a category of {base} "
                               f"(subfolders with {train_dir}/: {', '.join(known) or 'none'}); check data.categories")
    samples: list[Sample] = []
    guard = RootGuard(base, follow_links)
    for category in sorted(set(categories)):
        guard.check(base / category)
        if split == "train":
            samples += _scan_train(base, category, train_dir, guard)
            continue
        found = (_scan_test_csv(base, category, labels, guard) if labels
                 else _scan_test_folders(base, category, test_dir, mask_dir, guard))
        where = base / category / (labels or test_dir)
        for label, name in ((0, "normal"), (1, "anomalous")):
            if not any(s.label == label for s in found):
                raise DatasetError(f"no {name} test images for {category!r} in {where}: both classes are needed")
        samples += found
    if split == "test":
        jpeg = [s.mask_path for s in samples if s.mask_path and Path(s.mask_path).suffix.lower() in (".jpg", ".jpeg")]
        if jpeg:
            log.warning(f"{len(jpeg)} masks are JPEG files (e.g. {jpeg[0]}): lossy compression makes a mask larger "
                        "than drawn (values > 0 count as defect); save masks as PNG")
        anomalous = [s for s in samples if s.label == 1]
        with_mask = [s for s in anomalous if s.mask_path]
        if with_mask and len(with_mask) != len(anomalous):
            missing = next(s.path for s in anomalous if not s.mask_path)
            raise DatasetError(
                f"anomalous image {missing} has no mask while {len(with_mask)} others have one: give every "
                "anomalous image a mask or none (then the pixel metrics are skipped)"
            )
    return samples


class FolderDataset(MVTecDataset):
    """A user's dataset (see the module doc) as ``MVTecDataset`` items; ``has_masks`` says whether the
    test set has ground-truth masks (without them the pixel metrics are skipped)."""

    def __init__(self, root: str | os.PathLike, split: str, categories: list[str] | None = None,
                 image_size: int = 224, *, train_dir: str, test_dir: str, labels: str | None,
                 mask_dir: str | None, follow_links: bool = False):
        self.root = str(root)
        self.split = split
        self.image_size = int(image_size)
        self.samples = scan(root, categories, split, train_dir=train_dir, test_dir=test_dir, labels=labels,
                            mask_dir=mask_dir, follow_links=follow_links)
        self.categories = sorted({s.category for s in self.samples})
        self.has_masks = any(s.mask_path for s in self.samples)
