"""MVTec LOCO AD (Bergmann et al., IJCV 2022), as MVTec distributes it.

Layout: ``<root>/<class>/train/good/*.png``, ``<class>/validation/good`` (not used),
``<class>/test/{good,logical_anomalies,structural_anomalies}/*.png``, and per defective image a folder of
masks ``<class>/ground_truth/<defect>/<stem>/000.png, 001.png, ...``: one file per defect, whose pixels
carry that defect's value (255, 254, ...). The image's mask is their union (> 0). Each test image is
tagged with the subsets it is scored in (``subsets``): ``logical`` (good + logical anomalies) and
``structural`` (good + structural anomalies); evaluation reports each beside the metrics of all images.
"""

from __future__ import annotations

import os
from pathlib import Path

from data.errors import DatasetError
from data.mvtec import Sample
from data.reader import FolderBenchmark, check_mask_size, images_in, release_counts

CATEGORIES = ("breakfast_box", "juice_bottle", "pushpins", "screw_bag", "splicing_connectors")
SUBSETS = {"good": ("logical", "structural"), "logical_anomalies": ("logical",),
           "structural_anomalies": ("structural",)}
# (train, test good, test logical + structural) per class, counted in the distributed archive
# (1,778 / 575 + 993)
COUNTS = {
    "breakfast_box": (351, 102, 173),
    "juice_bottle": (335, 94, 236),
    "pushpins": (372, 138, 172),
    "screw_bag": (360, 122, 219),
    "splicing_connectors": (360, 119, 193),
}


class MVTecLOCODataset(FolderBenchmark):
    NAME = "MVTec LOCO AD"
    LAYOUT = "<class>/{train/good,test/<defect>,ground_truth/<defect>/<stem>/000.png}"
    RELEASE = "MVTec LOCO AD release"
    OFFICIAL = release_counts(COUNTS)

    def __init__(self, root: str | os.PathLike, split: str, categories: list[str] | None = None,
                 image_size: int = 224, strict_counts: bool = False, follow_links: bool = False):
        self._masks: dict[str, list[str]] = {}
        super().__init__(root, split, categories, image_size, strict_counts, follow_links)
        if self.split == "test":
            unknown = sorted({s.defect for s in self.samples} - set(SUBSETS))
            if unknown:
                raise DatasetError(f"unknown MVTec LOCO AD test folder {unknown[0]!r} in {self.root}: expected "
                                   f"{', '.join(SUBSETS)}")
            self.subsets = [SUBSETS[s.defect] for s in self.samples]

    def mask_of(self, category_dir: Path, defect: str, image: Path) -> Path | None:
        where = category_dir / "ground_truth" / defect / image.stem
        masks = images_in(where) if where.is_dir() else []
        if not masks:
            return None
        for mask in self.guard.check_all(masks):
            check_mask_size(image, mask)
        self._masks[str(where)] = [str(m) for m in masks]
        return where

    def mask_files(self, sample: Sample) -> list[str]:
        return self._masks[sample.mask_path] if sample.mask_path else []
