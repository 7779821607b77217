"""VisA, the Visual Anomaly dataset (Zou et al., ECCV 2022), as its authors distribute it (VisA.tar).

Layout: ``<root>/split_csv/1cls.csv`` with the columns ``object,split,label,image,mask`` (label
``normal`` or ``anomaly``; paths relative to the root), images ``<object>/Data/Images/{Normal,Anomaly}/*.JPG``
and masks ``<object>/Data/Masks/Anomaly/*.png`` whose pixels hold small region ids (1, 2, ...): a mask is
read as > 0. The split comes from the CSV only (``split_file``: ``split_csv/1cls.csv``, the one-class
split every unified benchmark uses), never from the folders.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from data.errors import DatasetError
from data.mvtec import Sample
from data.paths import RootGuard, check_category
from data.reader import (
    ReaderDataset,
    check_classes,
    check_counts,
    check_mask_size,
    found_counts,
    root_dir,
    select_categories,
)
from rules import BOOL

CATEGORIES = ("candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1", "pcb2",
              "pcb3", "pcb4", "pipe_fryum")
COLUMNS = ("object", "split", "label", "image", "mask")
LABELS = {"normal": 0, "anomaly": 1}
LAYOUT = "split_csv/1cls.csv and <object>/Data/{Images/{Normal,Anomaly},Masks/Anomaly}"
# (normal, anomalous) images per object in split_csv/1cls.csv of amazon-science/spot-diff
OFFICIAL = {
    "train": {"candle": (900, 0), "capsules": (542, 0), "cashew": (450, 0), "chewinggum": (453, 0),
              "fryum": (450, 0), "macaroni1": (900, 0), "macaroni2": (900, 0), "pcb1": (904, 0),
              "pcb2": (901, 0), "pcb3": (905, 0), "pcb4": (904, 0), "pipe_fryum": (450, 0)},
    "test": {"candle": (100, 100), "capsules": (60, 100), "cashew": (50, 100), "chewinggum": (50, 100),
             "fryum": (50, 100), "macaroni1": (100, 100), "macaroni2": (100, 100), "pcb1": (100, 100),
             "pcb2": (100, 100), "pcb3": (101, 100), "pcb4": (101, 100), "pipe_fryum": (50, 100)},
}


def read_split(path: Path) -> list[tuple[int, dict[str, str]]]:
    """The rows of a VisA split CSV with their line numbers; a missing file, a wrong header, label or
    object name (``data.paths.check_category``) is a one-line error naming the file and line."""
    if not path.is_file():
        raise DatasetError(f"missing VisA split file {path}: point data.root at the extracted VisA.tar folder "
                           f"({LAYOUT}) or set data.split_file")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise DatasetError(f"VisA split file {path} has columns {reader.fieldnames}, expected "
                               f"{','.join(COLUMNS)}: use split_csv/1cls.csv from the release")
        rows = [(reader.line_num, row) for row in reader]
    for number, row in rows:
        if row["label"] not in LABELS or row["split"] not in ("train", "test"):
            raise DatasetError(f"{path} line {number}: split {row['split']!r} / label {row['label']!r}, expected "
                               "train|test and normal|anomaly")
        check_category(row["object"], f"{path} line {number} (column object)")
    return rows


def check_splits(rows: list[tuple[int, dict[str, str]]], chosen: list[str], path: Path) -> None:
    """No chosen object has anomalous training rows (a 2-class split), and every one has training rows,
    normal test rows and anomalous test rows: an object missing any of them is named, never dropped from
    one split only."""
    for number, row in rows:
        if row["object"] in chosen and row["split"] == "train" and row["label"] == "anomaly":
            raise DatasetError(f"{path} line {number} lists anomalous training images ({row['image']}): a 2-class "
                               "split; unsupervised training needs split_csv/1cls.csv")
    present = {(row["object"], row["split"], row["label"]) for _, row in rows}
    for obj in chosen:
        for split, label, what in (("train", "normal", "training rows"), ("test", "normal", "normal test rows"),
                                   ("test", "anomaly", "anomalous test rows")):
            if (obj, split, label) not in present:
                raise DatasetError(f"{path}: object {obj!r} has no {what}: both splits and both test labels are "
                                   "needed (restore its rows or leave it out with data.categories)")


class VisADataset(ReaderDataset):
    """VisA by its split CSV; unified (every object of the CSV) or ``categories=[candle, ...]``."""

    RULES = {"strict_counts": BOOL}

    def __init__(self, root: str | os.PathLike, split: str, categories: list[str] | None = None,
                 image_size: int = 224, split_file: str = "split_csv/1cls.csv", strict_counts: bool = False,
                 follow_links: bool = False):
        super().__init__(root, split, image_size)
        base = root_dir(root, "VisA", LAYOUT)
        guard = RootGuard(base, follow_links)
        table = base / split_file
        rows = read_split(guard.check(table, "data.split_file"))
        known = sorted({row["object"] for _, row in rows})
        chosen = select_categories(known, list(categories) if categories is not None else None, table, "VisA")
        check_splits(rows, chosen, table)
        for number, row in rows:
            if row["split"] != self.split or row["object"] not in chosen:
                continue
            line = f"{table} line {number}"
            label = LABELS[row["label"]]
            image = guard.check(base / row["image"], f"{line} (column image)")
            if not image.is_file():
                raise DatasetError(f"{line}: missing VisA image {image}: re-extract VisA.tar")
            mask = None
            if label:
                if not row["mask"]:
                    raise DatasetError(f"{line}: anomalous image {row['image']} has no mask")
                mask = guard.check(base / row["mask"], f"{line} (column mask)")
                if not mask.is_file():
                    raise DatasetError(f"{line}: missing VisA mask {mask} for {image}: re-extract VisA.tar")
                check_mask_size(image, mask)
            defect = "anomaly" if label else "good"
            self.samples.append(Sample(str(image), row["object"], defect, label, None if mask is None else str(mask)))
        self.samples.sort(key=lambda s: (s.category, s.label, s.path))
        if not self.samples:
            raise DatasetError(f"no {self.split} rows for {chosen} in {table}")
        release = "1cls split" if Path(split_file).name == "1cls.csv" else f"split {split_file}"
        official = OFFICIAL[self.split] if Path(split_file).name == "1cls.csv" else {}
        check_counts("VisA", self.split, found_counts(self.samples), official, bool(strict_counts), release)
        if categories is None:
            check_classes("VisA", table, known, official, bool(strict_counts), release)
