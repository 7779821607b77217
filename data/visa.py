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
from data.reader import ReaderDataset, check_counts, check_mask_size, found_counts, root_dir, select_categories
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


def read_split(path: Path) -> list[dict[str, str]]:
    """The rows of a VisA split CSV; a missing file, a wrong header or label is a one-line error."""
    if not path.is_file():
        raise DatasetError(f"missing VisA split file {path}: point data.root at the extracted VisA.tar folder "
                           f"({LAYOUT}) or set data.split_file")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise DatasetError(f"VisA split file {path} has columns {reader.fieldnames}, expected "
                               f"{','.join(COLUMNS)}: use split_csv/1cls.csv from the release")
        rows = list(reader)
    for number, row in enumerate(rows, start=2):
        if row["label"] not in LABELS or row["split"] not in ("train", "test"):
            raise DatasetError(f"{path} line {number}: split {row['split']!r} / label {row['label']!r}, expected "
                               "train|test and normal|anomaly")
    return rows


class VisADataset(ReaderDataset):
    """VisA by its split CSV; unified (every object of the CSV) or ``categories=[candle, ...]``."""

    RULES = {"strict_counts": BOOL}

    def __init__(self, root: str | os.PathLike, split: str, categories: list[str] | None = None,
                 image_size: int = 224, split_file: str = "split_csv/1cls.csv", strict_counts: bool = False):
        super().__init__(root, split, image_size)
        base = root_dir(root, "VisA", LAYOUT)
        rows = read_split(base / split_file)
        known = sorted({row["object"] for row in rows})
        chosen = select_categories(known, list(categories) if categories is not None else None,
                                   base / split_file, "VisA")
        for row in rows:
            if row["split"] != self.split or row["object"] not in chosen:
                continue
            label = LABELS[row["label"]]
            if label and self.split == "train":
                raise DatasetError(f"{split_file} lists anomalous training images ({row['image']}): a 2-class split; "
                                   "unsupervised training needs split_csv/1cls.csv")
            image = base / row["image"]
            if not image.is_file():
                raise DatasetError(f"missing VisA image {image} (listed in {split_file}): re-extract VisA.tar")
            mask = None
            if label:
                if not row["mask"]:
                    raise DatasetError(f"{split_file}: anomalous image {row['image']} has no mask")
                mask = base / row["mask"]
                if not mask.is_file():
                    raise DatasetError(f"missing VisA mask {mask} for {image}: re-extract VisA.tar")
                check_mask_size(image, mask)
            defect = "anomaly" if label else "good"
            self.samples.append(Sample(str(image), row["object"], defect, label, None if mask is None else str(mask)))
        self.samples.sort(key=lambda s: (s.category, s.label, s.path))
        if not self.samples:
            raise DatasetError(f"no {self.split} rows for {chosen} in {base / split_file}")
        release = "1cls split" if Path(split_file).name == "1cls.csv" else f"split {split_file}"
        official = OFFICIAL[self.split] if Path(split_file).name == "1cls.csv" else {}
        check_counts("VisA", self.split, found_counts(self.samples), official, bool(strict_counts), release)
