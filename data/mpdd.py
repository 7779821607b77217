"""MPDD, the Metal Parts Defect Detection dataset (Jezek et al., ICUMT 2021), as its authors distribute it.

Layout (MVTec AD's): ``<root>/<class>/train/good/*.png``, ``<class>/test/{good,<defect>}/*.png`` and
``<class>/ground_truth/<defect>/<stem>_mask.png``; six classes (bracket_black, bracket_brown,
bracket_white, connector, metal_plate, tubes). A mask named ``<stem>.png`` is accepted too.
"""

from __future__ import annotations

from pathlib import Path

from data.reader import FolderBenchmark, find_mask, release_counts

CATEGORIES = ("bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes")
# (train, test normal, test anomalous) per class, counted in the distributed archive (888 / 176 + 282)
COUNTS = {
    "bracket_black": (289, 32, 47),
    "bracket_brown": (185, 26, 51),
    "bracket_white": (110, 30, 30),
    "connector": (128, 30, 14),
    "metal_plate": (54, 26, 71),
    "tubes": (122, 32, 69),
}


class MPDDDataset(FolderBenchmark):
    NAME = "MPDD"
    LAYOUT = "<class>/{train/good,test/<defect>,ground_truth/<defect>/<stem>_mask.png}"
    RELEASE = "MPDD release"
    OFFICIAL = release_counts(COUNTS)

    def mask_of(self, category_dir: Path, defect: str, image: Path) -> Path | None:
        return find_mask(category_dir / "ground_truth" / defect, image.stem, ("{stem}_mask", "{stem}"))
