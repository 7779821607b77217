"""BTAD, the beanTech Anomaly Detection dataset (Mishra et al., ISIE 2021), as its authors distribute it.

Layout: ``<root>/{01,02,03}/train/ok/*``, ``<class>/test/{ok,ko}/*`` and ``<class>/ground_truth/ko/<stem>.*``:
normal folders are ``ok``, anomalous ``ko``; images and masks are ``.bmp`` or ``.png`` depending on the
class, and a mask shares its image's stem. Some ``ko`` masks are all zero: the label still comes from
the folder (such an image counts in the image metrics, adds no anomalous pixel).
"""

from __future__ import annotations

from pathlib import Path

from data.reader import FolderBenchmark, find_mask, release_counts

CATEGORIES = ("01", "02", "03")
# (train, test ok, test ko) per class, counted in the distributed archive (1,799 / 451 + 290)
COUNTS = {
    "01": (400, 21, 49),
    "02": (399, 30, 200),
    "03": (1000, 400, 41),
}


class BTADDataset(FolderBenchmark):
    NAME = "BTAD"
    LAYOUT = "<class>/{train/ok,test/{ok,ko},ground_truth/ko/<stem>.png|.bmp}"
    TRAIN = "train/ok"
    NORMAL = "ok"
    RELEASE = "BTAD release"
    OFFICIAL = release_counts(COUNTS)

    def mask_of(self, category_dir: Path, defect: str, image: Path) -> Path | None:
        return find_mask(category_dir / "ground_truth" / defect, image.stem, ("{stem}", "{stem}_mask"))
