"""Miniature copies of the public benchmarks, generated in a test, with each release's real conventions.

File names, extensions, mask values and split files follow what the authors ship (README, datasets);
the images are tiny random ones. Each ``make_*`` returns the root to pass as ``data.root`` and the
expected (normal, anomalous) counts per split and class.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = (48, 40)  # width, height


def image(path: Path, seed: int, mode: str = "RGB", size=SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path)
    return path


def mask(path: Path, boxes: list[tuple[int, int, int, int, int]], size=SIZE) -> Path:
    """A mask with ``value`` inside each box (x0, y0, x1, y1, value); no box = all zero."""
    path.parent.mkdir(parents=True, exist_ok=True)
    values = np.zeros((size[1], size[0]), np.uint8)
    for x0, y0, x1, y1, value in boxes:
        values[y0:y1, x0:x1] = value
    Image.fromarray(values, "L").save(path)
    return path


def make_visa(root: Path) -> dict:
    """VisA.tar: split_csv/1cls.csv, <object>/Data/Images/{Normal,Anomaly}/*.JPG, Masks/Anomaly/*.png (ids)."""
    rows = []
    counts = {"train": {}, "test": {}}
    for obj, mode, (n_train, n_test_good, n_bad) in (("candle", "RGB", (4, 2, 2)), ("pcb1", "L", (3, 1, 2))):
        for i in range(n_train + n_test_good):
            rel = f"{obj}/Data/Images/Normal/{i:04d}.JPG"
            image(root / rel, i, mode)
            rows.append([obj, "train" if i < n_train else "test", "normal", rel, ""])
        for i in range(n_bad):
            rel, mrel = f"{obj}/Data/Images/Anomaly/{i:03d}.JPG", f"{obj}/Data/Masks/Anomaly/{i:03d}.png"
            image(root / rel, 100 + i, mode)
            mask(root / mrel, [(2, 2, 10, 10, 1), (20, 20, 30, 30, 2)])  # region ids, not 255
            rows.append([obj, "test", "anomaly", rel, mrel])
        counts["train"][obj] = (n_train, 0)
        counts["test"][obj] = (n_test_good, n_bad)
    (root / f"{obj}/Data/Images/Normal/Thumbs.db").write_text("not an image")
    (root / "split_csv").mkdir(parents=True)
    with (root / "split_csv" / "1cls.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["object", "split", "label", "image", "mask"])
        writer.writerows(rows)
    return counts


def _realiad_name(cls: str, sample: int, kind: str, view: str, ext: str) -> str:
    return f"{cls}_{sample:04d}_{kind}_{view}_2023092{sample}093630.{ext}"


def make_realiad(root: Path, resolution: str = "256", nested: bool = False) -> dict:
    """realiad_<res>/<class>/{OK,NG/<defect>}/S<nnnn>/<views>, realiad_jsons[_sv]/<class>.json.

    Per class: train sample S0001 (OK, 5 views); test sample S0003 (OK, 5 views) and S0002 (NG/HS: the
    defect is visible in C1 and C2 only; C3-C5 are labelled OK by anomaly_class though under NG/).
    """
    views = ["C1", "C2", "C3", "C4", "C5"]
    counts = {}
    jsons = root / "realiad_jsons" if nested else root
    for c, cls in enumerate(("audiojack", "mint")):
        where = root / f"realiad_{resolution}" / cls
        train, test = [], []
        for v, view in enumerate(views):
            rel = f"OK/S0001/{_realiad_name(cls, 1, 'OK', view, 'jpg')}"
            image(where / rel, 10 * c + v)
            train.append({"category": cls, "anomaly_class": "OK", "image_path": rel, "mask_path": None})
            rel = f"OK/S0003/{_realiad_name(cls, 3, 'OK', view, 'jpg')}"
            image(where / rel, 50 + 10 * c + v)
            test.append({"category": cls, "anomaly_class": "OK", "image_path": rel, "mask_path": None})
            rel = f"NG/HS/S0002/{_realiad_name(cls, 2, 'NG', view, 'jpg')}"
            image(where / rel, 90 + 10 * c + v)
            if view in ("C1", "C2"):
                mrel = rel[:-4] + ".png"
                mask(where / mrel, [(5, 5, 15, 15, 255)])
                test.append({"category": cls, "anomaly_class": "HS", "image_path": rel, "mask_path": mrel})
            else:
                test.append({"category": cls, "anomaly_class": "OK", "image_path": rel, "mask_path": None})
        for split, keep in (("realiad_jsons", views), ("realiad_jsons_sv", ["C1"])):
            info = {"meta": {"prefix": f"{cls}/", "normal_class": "OK"},
                    "train": [r for r in train if r["image_path"].split("_")[-2] in keep],
                    "test": [r for r in test if r["image_path"].split("_")[-2] in keep]}
            (jsons / split).mkdir(parents=True, exist_ok=True)
            (jsons / split / f"{cls}.json").write_text(json.dumps(info))
        counts[cls] = {"train": (5, 0), "test": (8, 2)}
    return counts


def make_loco(root: Path) -> dict:
    """<class>/{train/good,validation/good,test/{good,logical_anomalies,structural_anomalies}}, and
    ground_truth/<defect>/<stem>/000.png, 001.png with per-defect values 255, 254."""
    cls = root / "breakfast_box"
    for i in range(3):
        image(cls / "train" / "good" / f"{i:03d}.png", i)
    image(cls / "validation" / "good" / "000.png", 9)
    for i in range(2):
        image(cls / "test" / "good" / f"{i:03d}.png", 20 + i)
    for i in range(2):  # repeated stems across folders: 000.png in every test folder
        image(cls / "test" / "logical_anomalies" / f"{i:03d}.png", 30 + i)
        mask(cls / "ground_truth" / "logical_anomalies" / f"{i:03d}" / "000.png", [(0, 0, 8, 8, 255)])
    mask(cls / "ground_truth" / "logical_anomalies" / "000" / "001.png", [(30, 20, 40, 30, 254)])
    image(cls / "test" / "structural_anomalies" / "000.png", 40)
    mask(cls / "ground_truth" / "structural_anomalies" / "000" / "000.png", [(10, 10, 20, 20, 255)])
    (cls / "ground_truth" / "structural_anomalies" / "000" / "defects_config.json").write_text("{}")
    (root / "license.txt").write_text("CC BY-NC-SA 4.0")
    return {"breakfast_box": {"train": (3, 0), "test": (2, 3)}}


def make_btad(root: Path) -> dict:
    """{01,02,03}/{train/ok,test/{ok,ko},ground_truth/ko}: 01 .bmp images .png masks, 02 .png .png,
    03 .bmp .bmp; one ko mask of 03 is all zero."""
    exts = {"01": ("bmp", "png"), "02": ("png", "png"), "03": ("bmp", "bmp")}
    for c, (img_ext, mask_ext) in exts.items():
        for i in range(2):
            image(root / c / "train" / "ok" / f"{i:04d}.{img_ext}", i)
        image(root / c / "test" / "ok" / f"{0:04d}.{img_ext}", 10)
        for i in range(2):
            image(root / c / "test" / "ko" / f"{i:04d}.{img_ext}", 20 + i)
            empty = c == "03" and i == 1
            mask(root / c / "ground_truth" / "ko" / f"{i:04d}.{mask_ext}", [] if empty else [(4, 4, 12, 12, 255)])
    (root / "01" / "ground_truth" / "ko" / "Thumbs.db").write_text("not an image")
    return {c: {"train": (2, 0), "test": (1, 2)} for c in exts}


def make_mpdd(root: Path) -> dict:
    """MVTec AD layout: <class>/{train/good,test/{good,<defect>},ground_truth/<defect>/<stem>_mask.png}."""
    for c, (cls, mode) in enumerate((("bracket_black", "RGB"), ("tubes", "L"))):
        for i in range(2):
            image(root / cls / "train" / "good" / f"{i:03d}.png", c + i, mode)
        image(root / cls / "test" / "good" / "000.png", 10, mode)
        for defect in ("hole", "scratches"):  # the same stem 000 in both defect folders
            image(root / cls / "test" / defect / "000.png", 20, mode)
            mask(root / cls / "ground_truth" / defect / "000_mask.png",
                 [(0, 0, 5, 5, 255)] if defect == "hole" else [(30, 30, 40, 38, 255)])
    (root / "readme.txt").write_text("MPDD")
    return {cls: {"train": (2, 0), "test": (1, 2)} for cls in ("bracket_black", "tubes")}


def make_ad2(root: Path) -> dict:
    """<class>/{train/good,validation/good,test_public/{good,bad,ground_truth/bad/<stem>_mask.png},
    test_private,test_private_mixed} (the private sets unlabeled, never read)."""
    cls = root / "vial"
    for i in range(3):
        image(cls / "train" / "good" / f"{i:03d}_regular.png", i)
    image(cls / "validation" / "good" / "000_regular.png", 5)
    image(cls / "test_public" / "good" / "000_regular.png", 10)
    for i in range(2):
        image(cls / "test_public" / "bad" / f"{i:03d}_regular.png", 20 + i)
        mask(cls / "test_public" / "ground_truth" / "bad" / f"{i:03d}_regular_mask.png", [(3, 3, 9, 9, 255)])
    for sub in ("test_private", "test_private_mixed"):
        for i in range(4):
            image(cls / sub / f"{i:03d}_regular.png", 40 + i)
    return {"vial": {"train": (3, 0), "test": (1, 2)}}


def make_mvtec3d(root: Path) -> dict:
    """<class>/{train,validation,test/<defect>}/{rgb,gt,xyz}: rgb/*.png images, gt/*.png masks, xyz/*.tiff."""
    cls = root / "bagel"

    def sample(folder: Path, stem: str, seed: int, defect: bool) -> None:
        image(folder / "rgb" / f"{stem}.png", seed)
        image(folder / "xyz" / f"{stem}.tiff", seed, "L")
        mask(folder / "gt" / f"{stem}.png", [(6, 6, 16, 16, 255)] if defect else [])

    for i in range(3):
        sample(cls / "train" / "good", f"{i:03d}", i, False)
    sample(cls / "validation" / "good", "000", 9, False)
    sample(cls / "test" / "good", "000", 10, False)
    for defect in ("crack", "hole"):
        sample(cls / "test" / defect, "000", 20, True)
    return {"bagel": {"train": (3, 0), "test": (1, 2)}}


def ablation_smoke_sweep(tmp_path: Path, data: list[str]) -> tuple[list[dict], str]:
    """Rows 1 and 9 of ``+experiment=ablation`` at the smoke profile, one seed, on ``data``; then
    ``python -m reports``. Returns the run records and the rendered tables.md."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    env = {**os.environ, "UNIAD_BENCH_DATA": str(tmp_path / "datasets"), "UNIAD_BENCH_CACHE": str(tmp_path / "cache")}
    sweep, out = tmp_path / "sweep", tmp_path / "report"
    run = subprocess.run([sys.executable, "-m", "bench", "-m", "+experiment=ablation", *data, "profile=smoke",
                          "trainer.epochs=1", "seed=1", "hydra.sweeper.select=[1,9]", f"hydra.sweep.dir={sweep}"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    rep = subprocess.run([sys.executable, "-m", "reports", str(sweep), "--out", str(out)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in sorted(sweep.rglob("metrics.json"))]
    return records, (out / "tables.md").read_text()


def check_release_counts(cls, root: Path, counts: dict, monkeypatch) -> None:
    """A fixture's counts differ from the release's: a warning naming both, an error when strict;
    with the release's counts set to the fixture's, no warning."""
    import warnings

    import pytest

    from data.errors import DatasetError
    from data.reader import CountMismatchWarning

    category = sorted(counts)[0]
    n, a = counts[category]["test"]
    wn, wa = cls.OFFICIAL["test"][category]
    with pytest.warns(CountMismatchWarning, match=rf"{category} test: found {n} normal \+ {a} anomalous images, "
                                                  rf"the official .* has {wn} \+ {wa}"):
        cls(root, "test", categories=[category])
    with pytest.raises(DatasetError, match=rf"{category} test: found {n} normal"):
        cls(root, "test", categories=[category], strict_counts=True)
    monkeypatch.setattr(cls, "OFFICIAL", {s: {c: v[s] for c, v in counts.items()} for s in ("train", "test")})
    with warnings.catch_warnings():
        warnings.simplefilter("error", CountMismatchWarning)
        cls(root, "train", strict_counts=True)
        cls(root, "test", strict_counts=True)


def release_with(counts: dict, *missing: str) -> dict:
    """``OFFICIAL`` holding a fixture's classes and counts plus the classes ``missing`` (a release class that
    the fixture lacks, as a partial download does)."""
    official = {s: {c: v[s] for c, v in counts.items()} for s in ("train", "test")}
    for cls in missing:
        official["train"][cls], official["test"][cls] = (1, 0), (1, 1)
    return official


def visa_rows(root: Path, keep=lambda row: True, add: list[list[str]] = ()) -> int:
    """Rewrite VisA's split_csv/1cls.csv with the rows ``keep`` accepts plus ``add``; returns the line
    number of the last row (the header is line 1)."""
    split = root / "split_csv" / "1cls.csv"
    with split.open(newline="") as handle:
        header, *rows = list(csv.reader(handle))
    rows = [r for r in rows if keep(r)] + [list(r) for r in add]
    with split.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])
    return len(rows) + 1


def realiad_json(root: Path, cls: str, edit, split: str = "realiad_jsons") -> Path:
    """Apply ``edit(info)`` to the split file of ``cls`` (``make_realiad``'s flat layout); returns its path."""
    path = root / split / f"{cls}.json"
    info = json.loads(path.read_text())
    edit(info)
    path.write_text(json.dumps(info))
    return path


def move_out(root: Path, rel: str, outside: Path) -> Path:
    """Move ``root/rel`` (a file or folder) to ``outside`` and leave a symlink to it in its place: a dataset
    whose files live outside its root. Returns the link."""
    link, target = root / rel, outside / rel.replace("/", "_")
    target.parent.mkdir(parents=True, exist_ok=True)
    link.rename(target)
    link.symlink_to(target, target_is_directory=target.is_dir())
    return link
