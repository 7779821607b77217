"""MVTec 3D-AD (Bergmann et al., VISAPP 2022), RGB images only, as MVTec distributes it.

Layout: each sample folder holds ``rgb/``, ``gt/`` and ``xyz/``: ``<root>/<class>/train/good/rgb/*.png``,
``<class>/test/{good,<defect>}/rgb/*.png`` with the mask of an anomalous image at ``.../<defect>/gt/<stem>.png``.
``xyz/`` (the point clouds) is ignored; ``validation/`` is not used for training.
"""

from __future__ import annotations

from pathlib import Path

from data.reader import FolderBenchmark, find_mask, release_counts

CATEGORIES = ("bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach", "potato", "rope", "tire")
# (train, test good, test anomalous) per class: Table 1 of the paper (2,656 / 249 + 948)
COUNTS = {
    "bagel": (244, 22, 88),
    "cable_gland": (223, 21, 87),
    "carrot": (286, 27, 132),
    "cookie": (210, 28, 103),
    "dowel": (288, 26, 104),
    "foam": (236, 20, 80),
    "peach": (361, 26, 106),
    "potato": (300, 22, 92),
    "rope": (298, 32, 69),
    "tire": (210, 25, 87),
}


class MVTec3DDataset(FolderBenchmark):
    NAME = "MVTec 3D-AD"
    LAYOUT = "<class>/{train/good/rgb,test/<defect>/rgb,test/<defect>/gt/<stem>.png}"
    IMAGES_SUB = "rgb"
    RELEASE = "MVTec 3D-AD release"
    OFFICIAL = release_counts(COUNTS)

    def mask_of(self, category_dir: Path, defect: str, image: Path) -> Path | None:
        return find_mask(category_dir / "test" / defect / "gt", image.stem, ("{stem}",))
