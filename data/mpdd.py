"""MPDD, the Metal Parts Defect Detection dataset (Jezek et al., ICUMT 2021), as its authors distribute it.

Layout (MVTec AD's): ``<root>/<class>/train/good/*.png``, ``<class>/test/{good,<defect>}/*.png`` and
``<class>/ground_truth/<defect>/<stem>_mask.png``; six classes (bracket_black, bracket_brown,
bracket_white, connector, metal_plate, tubes). A mask named ``<stem>.png`` is accepted too.
"""

from __future__ import annotations

from pathlib import Path

from data.reader import FolderBenchmark, find_mask

CATEGORIES = ("bracket_black", "bracket_brown", "bracket_white", "connector", "metal_plate", "tubes")


class MPDDDataset(FolderBenchmark):
    NAME = "MPDD"
    LAYOUT = "<class>/{train/good,test/<defect>,ground_truth/<defect>/<stem>_mask.png}"
    RELEASE = "MPDD release"

    def mask_of(self, category_dir: Path, defect: str, image: Path) -> Path | None:
        return find_mask(category_dir / "ground_truth" / defect, image.stem, ("{stem}_mask", "{stem}"))
