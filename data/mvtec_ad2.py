"""MVTec AD 2 (Heckler-Kram et al., 2025), as MVTec distributes it: ``test_public`` is the scored test set.

Layout: ``<root>/<class>/train/good/*.png``, ``<class>/validation/good/*.png`` (not used),
``<class>/test_public/{good,bad}/*.png`` and ``<class>/test_public/ground_truth/bad/<stem>_mask.png``.
``test_private/`` and ``test_private_mixed/`` carry no labels (they are scored by MVTec's server) and are
never read or counted.
"""

from __future__ import annotations

from pathlib import Path

from data.reader import FolderBenchmark, find_mask, release_counts

CATEGORIES = ("can", "fabric", "fruit_jelly", "rice", "sheet_metal", "vial", "wallplugs", "walnuts")
# (train, test_public good, test_public bad) per class, counted in the distributed archive (2,830 / 379 + 705)
COUNTS = {
    "can": (458, 72, 90),
    "fabric": (430, 66, 90),
    "fruit_jelly": (300, 20, 60),
    "rice": (348, 42, 90),
    "sheet_metal": (156, 24, 90),
    "vial": (332, 35, 105),
    "wallplugs": (326, 60, 90),
    "walnuts": (480, 60, 90),
}


class MVTecAD2Dataset(FolderBenchmark):
    NAME = "MVTec AD 2"
    LAYOUT = "<class>/{train/good,test_public/{good,bad},test_public/ground_truth/bad/<stem>_mask.png}"
    TEST = "test_public"
    SKIP = ("ground_truth",)
    RELEASE = "MVTec AD 2 release"
    OFFICIAL = release_counts(COUNTS)

    def mask_of(self, category_dir: Path, defect: str, image: Path) -> Path | None:
        return find_mask(category_dir / "test_public" / "ground_truth" / defect, image.stem, ("{stem}_mask",))
