"""Real-IAD (Wang et al., CVPR 2024), as its authors distribute it: images per resolution, JSON splits.

Layout: ``<root>/realiad_<resolution>/<class>/{OK,NG/<defect>}/S<nnnn>/<class>_<nnnn>_<OK|NG>_C<v>_<time>.jpg``
with each mask (``.png``) beside its image, and the split files ``<root>/<split>/<class>.json`` (also found
one level down, ``<root>/realiad_jsons/<split>/``, as ``realiad_jsons.zip`` may extract). A split file
holds ``meta`` (``prefix``: the class folder, ``normal_class``: ``OK``) and ``train`` / ``test`` lists of
records ``{category, anomaly_class, image_path, mask_path}`` with paths relative to the class folder.

Conventions (the authors' loader and evaluation, Tencent/AnomalyDetection_Real-IAD):

* a test record's label comes from its ``anomaly_class`` (anomalous unless it is ``normal_class``),
  never from its path: views of a defective sample where the defect is not visible are ``OK`` but lie
  under ``NG/``; training records are normal (the FUIAD splits deliberately train on unlabeled defects);
* ``json_split`` (``data.json_split``; ``split`` is the train/test argument): ``realiad_jsons``
  (multi-view, the default), ``realiad_jsons_sv`` (single view C1), ``realiad_jsons_fuiad_0.0|0.1|0.2|0.4``;
  ``resolution``: 256, 512, 1024 or raw;
* ``views=[C1, ...]`` keeps those camera views only (the ``C<v>`` field of the file name);
* one object photographed from five views is one sample, its id the file name up to ``_C<v>_``
  (``groups``); a sample is anomalous if any of its views is, and evaluation scores it by its highest view.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from data.errors import DatasetError
from data.mvtec import Sample
from data.paths import RootGuard, check_category
from data.reader import (
    ReaderDataset,
    check_classes,
    check_mask_size,
    count_mismatch,
    found_counts,
    root_dir,
    select_categories,
)
from rules import BOOL, ONE_OF

CATEGORIES = ("audiojack", "bottle_cap", "button_battery", "end_cap", "eraser", "fire_hood", "mint", "mounts",
              "pcb", "phone_battery", "plastic_nut", "plastic_plug", "porcelain_doll", "regulator",
              "rolled_strip_base", "sim_card_set", "switch", "tape", "terminalblock", "toothbrush", "toy",
              "toy_brick", "transistor1", "u_block", "usb", "usb_adaptor", "vcpill", "wooden_beads",
              "woodstick", "zipper")
SPLITS = ("realiad_jsons", "realiad_jsons_sv", "realiad_jsons_fuiad_0.0", "realiad_jsons_fuiad_0.1",
          "realiad_jsons_fuiad_0.2", "realiad_jsons_fuiad_0.4")
RESOLUTIONS = ("256", "512", "1024", "raw")
VIEWS = ("C1", "C2", "C3", "C4", "C5")
LAYOUT = "realiad_<resolution>/<class>/... and <split>/<class>.json"
# (normal, anomalous) images of all 30 classes per split file set: the totals of a complete download
# (train: all normal by convention; test anomalous = records with a mask)
OFFICIAL_TOTALS = {
    "realiad_jsons": {"train": (36465, 0), "test": (63256, 51329)},
    "realiad_jsons_sv": {"train": (10408, 0), "test": (10387, 9415)},
    **{f"realiad_jsons_fuiad_{r}": {"train": (57840, 0), "test": (20157, 9843)} for r in ("0.0", "0.1", "0.2", "0.4")},
}
# the authors' sample key (their ADEval command): <class>_<nnnn>_<OK|NG...> before _C<view>_
SAMPLE_KEY = re.compile(r"([a-zA-Z][a-zA-Z0-9_]*_[0-9]{4}_[A-Z][A-Z_]*[A-Z])_(C[0-9])_")


def split_folder(base: Path, split: str) -> Path:
    for where in (base / split, base / "realiad_jsons" / split):
        if where.is_dir() and any(where.glob("*.json")):
            return where
    raise DatasetError(f"missing Real-IAD split folder {base / split} (or {base / 'realiad_jsons' / split}): "
                       f"extract realiad_jsons.zip into data.root or pick data.json_split from {', '.join(SPLITS)}")


def view_and_sample(image_path: str, where: str) -> tuple[str, str]:
    """(camera view, sample id) from a Real-IAD file name; an unexpected name is a one-line error naming
    ``where`` (the JSON file and key)."""
    match = SAMPLE_KEY.search(Path(image_path).name)
    if match is None:
        raise DatasetError(f"{where}: Real-IAD file name {image_path!r} has no <class>_<nnnn>_<OK|NG>_C<view>_ "
                           "part: is this the Real-IAD release?")
    return match.group(2), match.group(1)


def read_split(path: Path) -> dict:
    """A class's split file; it must hold ``meta`` and non-empty ``train`` and ``test`` lists of records
    with an ``image_path`` (a class with one split only is named, never dropped)."""
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise DatasetError(f"unreadable Real-IAD split file {path} ({error}): re-extract realiad_jsons.zip") from None
    if not isinstance(info, dict) or not all(k in info for k in ("meta", "train", "test")):
        raise DatasetError(f"Real-IAD split file {path} lacks meta/train/test: re-extract realiad_jsons.zip")
    if not isinstance(info["meta"], dict):
        raise DatasetError(f"{path} key meta: expected an object with prefix and normal_class")
    for split in ("train", "test"):
        records = info[split]
        if not isinstance(records, list) or not records:
            raise DatasetError(f"{path} key {split}: class {path.stem!r} has no {split} records: both splits are "
                               "needed (re-extract realiad_jsons.zip or leave the class out with data.categories)")
        for index, record in enumerate(records):
            if not isinstance(record, dict) or not isinstance(record.get("image_path"), str):
                raise DatasetError(f"{path} key {split}[{index}]: expected a record with an image_path")
    return info


class RealIADDataset(ReaderDataset):
    """Real-IAD by its JSON split files; unified (every class file of ``split``) or ``categories=[...]``."""

    RULES = {"resolution": ONE_OF(*(int(r) if r.isdigit() else r for r in RESOLUTIONS)),
             "views": ONE_OF(*VIEWS, items=True, null=True), "strict_counts": BOOL}

    def __init__(self, root: str | os.PathLike, split: str, categories: list[str] | None = None,
                 image_size: int = 224, json_split: str = "realiad_jsons", resolution: str | int = 1024,
                 views: list[str] | None = None, strict_counts: bool = False, follow_links: bool = False):
        super().__init__(root, split, image_size)
        base = root_dir(root, "Real-IAD", LAYOUT)
        guard = RootGuard(base, follow_links)
        resolution = str(resolution)
        if resolution not in RESOLUTIONS:
            raise DatasetError(f"data.resolution={resolution} is not a Real-IAD resolution: choose "
                               f"{', '.join(RESOLUTIONS)}")
        if views is not None:
            views = list(views)
            bad = [v for v in views if v not in VIEWS]
            if bad or not views:
                raise DatasetError(f"data.views={views} must be some of {', '.join(VIEWS)} (null = all views)")
        images = base / f"realiad_{resolution}"
        if not images.is_dir():
            raise DatasetError(f"missing Real-IAD image folder {images}: extract the {resolution} px images there "
                               "or set data.resolution")
        guard.check(images, "data.resolution")
        jsons = guard.check(split_folder(base, json_split), "data.json_split")
        files = sorted(p for p in jsons.glob("*.json") if not p.name.startswith("."))
        known = [check_category(p.stem, f"{p} (its file name)") for p in files]
        chosen = select_categories(known, list(categories) if categories is not None else None, jsons, "Real-IAD")
        groups: list[str] = []
        for category in chosen:
            path = guard.check(jsons / f"{category}.json", "data.json_split")
            info = read_split(path)
            prefix = str(info["meta"].get("prefix") or category)
            normal = info["meta"].get("normal_class", "OK")
            where = guard.check(images / prefix, f"{path} key meta.prefix")
            if not where.is_dir():
                raise DatasetError(f"{path} key meta.prefix: missing Real-IAD class folder {where}: extract "
                                   f"{category}'s images there")
            for index, record in enumerate(info[self.split]):
                key = f"{path} key {self.split}[{index}]"
                view, sample_id = view_and_sample(record["image_path"], f"{key}.image_path")
                if views is not None and view not in views:
                    continue
                image = guard.check(where / record["image_path"], f"{key}.image_path")
                if not image.is_file():
                    raise DatasetError(f"{key}.image_path: missing Real-IAD image {image}: re-extract the class "
                                       "archive")
                label = int(self.split == "test" and record.get("anomaly_class") != normal)
                mask = None
                if label:
                    if not isinstance(record.get("mask_path"), str) or not record["mask_path"]:
                        raise DatasetError(f"{key}.mask_path: anomalous record {record['image_path']} "
                                           f"(anomaly_class {record.get('anomaly_class')}) has no mask_path")
                    mask = guard.check(where / record["mask_path"], f"{key}.mask_path")
                    if not mask.is_file():
                        raise DatasetError(f"{key}.mask_path: missing Real-IAD mask {mask} for {image}: re-extract "
                                           "the class archive")
                    check_mask_size(image, mask)
                self.samples.append(Sample(str(image), category, str(record.get("anomaly_class")), label,
                                           None if mask is None else str(mask)))
                groups.append(f"{category}/{sample_id}")
        if not self.samples:
            raise DatasetError(f"no Real-IAD {self.split} images for {chosen} in {jsons} (views {views})")
        if self.split == "test":
            self.groups = groups
        self._check_totals(json_split, chosen, views, bool(strict_counts))
        if categories is None:
            check_classes("Real-IAD", jsons, known, CATEGORIES, bool(strict_counts), "Real-IAD release")

    def _check_totals(self, json_split: str, chosen: list[str], views, strict: bool) -> None:
        """All 30 classes and all views: compare the totals with the release's (warn, or raise if strict)."""
        official = OFFICIAL_TOTALS.get(json_split, {}).get(self.split)
        if official is None or views is not None or sorted(chosen) != sorted(CATEGORIES):
            return
        found = [sum(c[i] for c in found_counts(self.samples).values()) for i in (0, 1)]
        if tuple(found) == official:
            return
        message = (f"Real-IAD {json_split} {self.split}: found {found[0]} normal + {found[1]} anomalous images "
                   f"in {len(chosen)} classes, the release has {official[0]} + {official[1]}; a partial download?")
        count_mismatch(message, strict, stacklevel=3)
