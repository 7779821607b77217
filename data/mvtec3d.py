"""MVTec 3D-AD (Bergmann et al., VISAPP 2022), RGB images only, as MVTec distributes it.

Layout: each sample folder holds ``rgb/``, ``gt/`` and ``xyz/``: ``<root>/<class>/train/good/rgb/*.png``,
``<class>/test/{good,<defect>}/rgb/*.png`` with the mask of an anomalous image at ``.../<defect>/gt/<stem>.png``.
``xyz/`` (the point clouds) is ignored; ``validation/`` is not used for training.
"""

from __future__ import annotations

from pathlib import Path

from data.reader import FolderBenchmark, find_mask

CATEGORIES = ("bagel", "cable_gland", "carrot", "cookie", "dowel", "foam", "peach", "potato", "rope", "tire")


class MVTec3DDataset(FolderBenchmark):
    NAME = "MVTec 3D-AD"
    LAYOUT = "<class>/{train/good/rgb,test/<defect>/rgb,test/<defect>/gt/<stem>.png}"
    IMAGES_SUB = "rgb"
    RELEASE = "MVTec 3D-AD release"

    def mask_of(self, category_dir: Path, defect: str, image: Path) -> Path | None:
        return find_mask(category_dir / "test" / defect / "gt", image.stem, ("{stem}",))
