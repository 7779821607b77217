"""Bad input the readers used to take silently (README, datasets): category names from split files that
are paths or the mean row, release classes missing from a download, classes with one split only, files
that resolve outside ``data.root``, and errors that do not say which key to set."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import pytest

from bench.build import build_dataset
from bench.errors import BenchError
from data import btad, mpdd, realiad, visa
from data.btad import BTADDataset
from data.cifar10 import Cifar10ManyVsMany
from data.errors import DatasetError
from data.folder import FolderDataset
from data.mpdd import MPDDDataset
from data.mvtec import MVTecDataset
from data.mvtec3d import MVTec3DDataset
from data.mvtec_ad2 import MVTecAD2Dataset
from data.mvtec_loco import MVTecLOCODataset
from data.paths import RootGuard, check_category
from data.reader import CountMismatchWarning
from data.realiad import RealIADDataset
from data.visa import VisADataset
from tests.benchmark_fixtures import (
    make_ad2,
    make_btad,
    make_loco,
    make_mpdd,
    make_mvtec3d,
    make_realiad,
    make_visa,
    move_out,
    realiad_json,
    release_with,
    visa_rows,
)
from tests.conftest import compose_cfg
from tests.test_cifar10 import cifar  # noqa: F401 (fixture)
from tests.test_folder import FOLDERS, make_csv, make_folders
from tests.test_mvtec import make_tree

pytestmark = pytest.mark.filterwarnings("ignore::data.reader.CountMismatchWarning")  # tiny fixtures

# reader: (make the layout under a root, build a split with keyword arguments, a class folder, a file of it)
READERS = {
    "mvtec": (make_tree, lambda r, s, **k: MVTecDataset(r, s, **k), "bottle", "bottle/train/good/000.png"),
    "folder": (make_folders, lambda r, s, **k: FolderDataset(r, s, **FOLDERS, **k), "bolt", "bolt/train/n0.png"),
    "mpdd": (make_mpdd, lambda r, s, **k: MPDDDataset(r, s, **k), "tubes", "tubes/test/hole/000.png"),
    "btad": (make_btad, lambda r, s, **k: BTADDataset(r, s, **k), "02", "02/ground_truth/ko/0000.png"),
    "mvtec_loco": (make_loco, lambda r, s, **k: MVTecLOCODataset(r, s, **k), "breakfast_box",
                   "breakfast_box/ground_truth/logical_anomalies/000/001.png"),
    "mvtec_ad2": (make_ad2, lambda r, s, **k: MVTecAD2Dataset(r, s, **k), "vial",
                  "vial/test_public/ground_truth/bad/000_regular_mask.png"),
    "mvtec3d": (make_mvtec3d, lambda r, s, **k: MVTec3DDataset(r, s, **k), "bagel", "bagel/test/crack/gt/000.png"),
    "visa": (make_visa, lambda r, s, **k: VisADataset(r, s, **k), "pcb1", "pcb1/Data/Masks/Anomaly/001.png"),
    "realiad": (make_realiad, lambda r, s, **k: RealIADDataset(r, s, resolution=256, **k), "realiad_256/mint",
                "realiad_256/mint/NG/HS/S0002/mint_0002_NG_C2_20230922093630.png"),
}


def _built(name: str, tmp_path: Path) -> tuple[Path, callable]:
    make, build, _, _ = READERS[name]
    root = tmp_path / name
    root.mkdir()
    make(root)
    return root, build


# 1. a category from a split file or a folder is a plain folder name


def test_one_function_says_what_a_category_name_may_be():
    assert check_category("pcb1", "x.csv line 2") == "pcb1"
    for bad, says in (("../../x/victim", "path"), ("a/b", "path"), ("..", "path"), (".cache", "hidden"),
                      ("mean", "mean row"), ("", "not a folder name")):
        with pytest.raises(DatasetError, match=rf"^x\.csv line 2: category .* {says}"):
            check_category(bad, "x.csv line 2")


@pytest.mark.parametrize("name, says", [("../../x/victim", "is a path"), ("mean", "mean row"), (".pcb", "hidden")])
def test_a_visa_object_is_a_folder_name_never_a_path(tmp_path, name, says):
    root, _ = _built("visa", tmp_path)
    line = visa_rows(root, add=[[name, "test", "normal", "candle/Data/Images/Normal/0000.JPG", ""]])
    for split in ("train", "test"):
        with pytest.raises(DatasetError, match=rf"1cls\.csv line {line} \(column object\): category '{re.escape(name)}"
                                               rf"' .*{says}"):
            VisADataset(root, split)


def test_a_class_folder_named_mean_is_refused_by_the_folder_benchmarks(tmp_path):
    root, _ = _built("mpdd", tmp_path)
    shutil.copytree(root / "tubes", root / "mean")
    with pytest.raises(DatasetError, match=r"mpdd: category 'mean' collides with the mean row"):
        MPDDDataset(root, "test")


def test_a_realiad_split_file_name_is_a_category_name(tmp_path):
    root, _ = _built("realiad", tmp_path)
    shutil.copy(root / "realiad_jsons" / "mint.json", root / "realiad_jsons" / "mean.json")
    with pytest.raises(DatasetError, match=r"realiad_jsons/mean\.json \(its file name\): category 'mean' collides"):
        RealIADDataset(root, "test", resolution=256)


# 2. a release class missing from a download, a class with one split only


@pytest.mark.parametrize("module, cls, make, absent", [(mpdd, MPDDDataset, make_mpdd, "connector"),
                                                       (btad, BTADDataset, make_btad, "04")])
def test_a_release_class_missing_from_the_folders_warns_and_fails_when_strict(tmp_path, monkeypatch, module, cls,
                                                                              make, absent):
    root = tmp_path / "ds"
    counts = {c: v for c, v in make(root).items()}
    monkeypatch.setattr(cls, "OFFICIAL", release_with(counts, absent))
    with pytest.warns(CountMismatchWarning, match=rf"1 class of the .* release missing \({absent}\)"):
        cls(root, "test")
    with pytest.raises(DatasetError, match=rf"missing \({absent}\).*strict_counts=false only warns"):
        cls(root, "train", strict_counts=True)
    cls(root, "test", categories=sorted(counts), strict_counts=True)  # a selection: nothing missing


def test_a_visa_object_without_rows_is_a_missing_class(tmp_path, monkeypatch):
    root = tmp_path / "VisA"
    by_split = make_visa(root)
    counts = {c: {s: by_split[s][c] for s in by_split} for c in by_split["train"]}
    monkeypatch.setattr(visa, "OFFICIAL", release_with(counts, "fryum"))
    with pytest.warns(CountMismatchWarning, match=r"VisA in .*1cls\.csv: 1 class of the 1cls split missing \(fryum\)"):
        VisADataset(root, "test")
    with pytest.raises(DatasetError, match=r"missing \(fryum\)"):
        VisADataset(root, "test", strict_counts=True)


@pytest.mark.parametrize("dropped, what", [(("test",), "normal test rows"), (("train",), "training rows"),
                                           (("test", "anomaly"), "anomalous test rows")])
def test_a_visa_object_with_one_split_is_named_in_both_splits(tmp_path, dropped, what):
    root, _ = _built("visa", tmp_path)
    visa_rows(root, keep=lambda row: not (row[0] == "pcb1" and tuple(row[1:1 + len(dropped)]) == dropped))
    for split in ("train", "test"):
        with pytest.raises(DatasetError, match=rf"1cls\.csv: object 'pcb1' has no {what}"):
            VisADataset(root, split)
    assert VisADataset(root, "test", categories=["candle"]).categories == ["candle"]


def test_a_realiad_class_without_test_records_is_named(tmp_path):
    root, _ = _built("realiad", tmp_path)
    path = realiad_json(root, "mint", lambda info: info.update(test=[]))
    for split in ("train", "test"):
        with pytest.raises(DatasetError, match=rf"{re.escape(str(path))} key test: class 'mint' has no test records"):
            RealIADDataset(root, split, resolution=256)


def test_a_realiad_class_missing_from_the_split_files_warns_and_fails_when_strict(tmp_path, monkeypatch):
    root, _ = _built("realiad", tmp_path)
    monkeypatch.setattr(realiad, "CATEGORIES", ("audiojack", "mint", "pcb"))
    with pytest.warns(CountMismatchWarning, match=r"1 class of the Real-IAD release missing \(pcb\)"):
        RealIADDataset(root, "test", resolution=256)
    with pytest.raises(DatasetError, match=r"missing \(pcb\)"):
        RealIADDataset(root, "train", resolution=256, strict_counts=True)


@pytest.mark.parametrize("remove", [["tubes/train"], ["tubes/test"], ["tubes/test/good"],
                                    ["tubes/test/hole", "tubes/test/scratches"]])
def test_a_folder_class_with_one_split_or_one_test_label_is_named(tmp_path, remove):
    root, _ = _built("mpdd", tmp_path)
    for folder in remove:
        shutil.rmtree(root / folder)
    with pytest.raises(DatasetError, match=r"(MPDD class 'tubes'|'tubes' is empty)"):
        MPDDDataset(root, "train")
        MPDDDataset(root, "test")


@pytest.mark.parametrize("reader", ["mvtec", "folder"])
def test_an_mvtec_or_folder_class_with_a_test_set_and_no_train_set_is_named(tmp_path, reader):
    root, build = _built(reader, tmp_path)
    cls = READERS[reader][2]
    shutil.rmtree(root / cls / "train")
    with pytest.raises(DatasetError, match=rf"missing folder .*{cls}/train"):
        build(root, "train")


# 3. files that resolve outside data.root


@pytest.mark.parametrize("name", sorted(READERS))
@pytest.mark.parametrize("which", ["class folder", "file"])
def test_a_symlink_out_of_the_root_is_refused_unless_follow_links(tmp_path, name, which):
    root, build = _built(name, tmp_path)
    before = {s: len(build(root, s)) for s in ("train", "test")}
    link = move_out(root, READERS[name][2 if which == "class folder" else 3], tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match=r"resolves to .*elsewhere.* outside data\.root .*data\.follow_links=true"):
        for split in ("train", "test"):
            build(root, split)
    assert {s: len(build(root, s, follow_links=True)) for s in ("train", "test")} == before, link


@pytest.mark.parametrize("column", ["image", "mask"])
@pytest.mark.parametrize("form", ["../outside/x.{ext}", "{outside}/x.{ext}"])
def test_a_visa_csv_path_out_of_the_root_names_its_line(tmp_path, column, form):
    root, _ = _built("visa", tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(root / "pcb1/Data/Images/Anomaly/000.JPG", outside / "x.JPG")
    shutil.copy(root / "pcb1/Data/Masks/Anomaly/000.png", outside / "x.png")
    row = ["pcb1", "test", "anomaly", "pcb1/Data/Images/Anomaly/001.JPG", "pcb1/Data/Masks/Anomaly/001.png"]
    index = 3 if column == "image" else 4
    row[index] = form.format(outside=outside, ext="JPG" if column == "image" else "png")
    line = visa_rows(root, keep=lambda r: r[3] != "pcb1/Data/Images/Anomaly/001.JPG", add=[row])
    with pytest.raises(DatasetError, match=rf"1cls\.csv line {line} \(column {column}\): .* outside data\.root"):
        VisADataset(root, "test")
    assert len(VisADataset(root, "test", follow_links=True)) == 7


@pytest.mark.parametrize("key", ["image_path", "mask_path", "prefix"])
def test_a_realiad_path_out_of_the_root_names_its_json_key(tmp_path, key):
    root, _ = _built("realiad", tmp_path)
    shutil.copytree(root / "realiad_256" / "mint", tmp_path / "outside" / "mint")

    def edit(info):  # the prefix is relative to realiad_256/, a record's paths to realiad_256/mint/
        if key == "prefix":
            info["meta"]["prefix"] = "../../outside/mint/"
            return
        record = next(r for r in info["test"] if r["mask_path"])
        record[key] = "../../../outside/mint/" + record[key]

    path = realiad_json(root, "mint", edit)
    named = "meta.prefix" if key == "prefix" else rf"test\[\d+\]\.{key}"
    with pytest.raises(DatasetError, match=rf"{re.escape(str(path))} key {named}: .* outside data\.root"):
        RealIADDataset(root, "test", resolution=256)
    assert len(RealIADDataset(root, "test", resolution=256, follow_links=True)) == 20


@pytest.mark.parametrize("column", ["path", "mask"])
def test_a_folder_csv_path_out_of_the_root_names_its_line(tmp_path, column):
    root = make_csv(tmp_path / "d", categories=("bolt",))
    make_csv(tmp_path / "victim", categories=("bolt",))
    rows = (root / "bolt" / "labels.csv").read_text().splitlines()
    rows[-1] = ("../../victim/bolt/images/bad1.png,1,gt/bad1.png" if column == "path"
                else "images/bad1.png,1,../../victim/bolt/gt/bad1.png")
    (root / "bolt" / "labels.csv").write_text("\n".join(rows) + "\n")
    layout = {**FOLDERS, "labels": "labels.csv"}
    with pytest.raises(DatasetError, match=rf"labels\.csv line {len(rows)} \(column {column}\): .* outside data\.root"):
        FolderDataset(root, "test", **layout)
    assert len(FolderDataset(root, "test", **layout, follow_links=True)) == 4


def test_a_cifar10_batch_out_of_the_root_is_refused(cifar, tmp_path):  # noqa: F811
    move_out(cifar, "cifar-10-batches-py/test_batch", tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match=r"test_batch resolves to .* outside data\.root"):
        Cifar10ManyVsMany(cifar, "test", [0, 1, 2, 3, 4])
    assert len(Cifar10ManyVsMany(cifar, "test", [0, 1, 2, 3, 4], follow_links=True)) == 20
    assert len(Cifar10ManyVsMany(cifar, "train", [0, 1, 2, 3, 4])) == 25  # the other split's files are inside


def test_the_root_may_itself_be_a_link(tmp_path):
    root, build = _built("mpdd", tmp_path)
    (tmp_path / "link").symlink_to(root, target_is_directory=True)
    assert len(build(tmp_path / "link", "test")) == len(build(root, "test"))
    assert RootGuard(tmp_path / "link").inside(root / "tubes" / ".." / "tubes")
    assert not RootGuard(tmp_path / "link").inside(root / "..")


def test_follow_links_is_a_key_of_every_dataset_config():
    for name in ("btad", "cifar10", "folder", "mpdd", "mvtec", "mvtec3d", "mvtec_ad2", "mvtec_loco", "realiad",
                 "synthetic", "visa"):
        cfg = compose_cfg([f"data={name}"])
        assert cfg.data.follow_links is False, name


# 4. errors that name the key to set


def test_a_folder_dataset_in_the_mvtec_layout_names_train_dir(tmp_path):
    root = make_tree(tmp_path / "mvtec")
    with pytest.raises(DatasetError, match=r"set data\.train_dir=train/good"):
        FolderDataset(root, "train", **FOLDERS)
    assert len(FolderDataset(root, "train", **{**FOLDERS, "train_dir": "train/good"})) > 0


def test_data_folder_without_a_root_names_data_root():
    with pytest.raises(BenchError, match=r"data=folder needs its dataset folder: pass data\.root=/path/to/your/"):
        build_dataset(compose_cfg(["data=folder"]).data, "train")


def test_a_missing_root_from_the_data_root_names_the_env_var(tmp_path):
    cfg = compose_cfg(["data=mpdd", f"paths.data_root={tmp_path / 'nowhere'}"])
    with pytest.raises(DatasetError, match=r"missing MPDD root .*UNIAD_BENCH_DATA.*paths\.data_root="):
        build_dataset(cfg.data, "train")
    cfg = compose_cfg(["data=mpdd", f"data.root={tmp_path / 'nowhere'}"])  # set directly: only data.root
    with pytest.raises(DatasetError) as error:
        build_dataset(cfg.data, "train")
    assert "UNIAD_BENCH_DATA" not in str(error.value) and "data.root" in str(error.value)


def test_fixtures_read_cleanly_with_every_check_on(tmp_path):
    """The checks refuse nothing in a sound layout (no warning but the tiny fixtures' counts)."""
    for name in READERS:
        root, build = _built(name, tmp_path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CountMismatchWarning)
            assert len(build(root, "train")) and len(build(root, "test"))
