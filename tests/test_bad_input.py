"""Bad input on the reading side (README, "Bad input, reruns and resuming"): rotated JPEGs, decompression
bombs, CSV encodings and repeated rows, JPEG masks, incomplete MVTec classes, categories that are paths
or collide with the mean row."""

from __future__ import annotations

import logging
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.errors import DatasetError
from data.folder import FolderDataset, scan
from data.mvtec import MVTecDataset
from data.transforms import check_image, load_image, load_mask, load_rgb, shown_size
from tests.test_folder import CSV, FOLDERS, make_csv, make_folders
from tests.test_mvtec import make_tree

ORIENTATION = 0x0112


def _upright(width=48, height=32) -> tuple[np.ndarray, np.ndarray]:
    """A grey picture with a bright block in its top-left corner, and the mask of that block."""
    image = np.full((height, width, 3), 60, np.uint8)
    mask = np.zeros((height, width), np.uint8)
    image[2:12, 3:20] = 250
    mask[2:12, 3:20] = 255
    return image, mask


def _save_rotated(path: Path, image: np.ndarray, orientation: int) -> None:
    """Store ``image`` as a camera would: pixels turned, EXIF orientation saying how to show them."""
    stored = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).transpose(stored[orientation]).save(path, quality=95, exif=exif)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_exif_orientation_is_applied_to_images_and_sizes(tmp_path, orientation):
    image, mask = _upright()
    path = tmp_path / "photo.jpg"
    _save_rotated(path, image, orientation)
    assert shown_size(path) == (48, 32) and load_rgb(path).size == (48, 32)
    shown = np.asarray(load_rgb(path).convert("L"), dtype=float)
    assert shown[mask > 0].mean() > 200 and shown[mask == 0].mean() < 100  # the block is where its mask is


def test_a_rotated_jpeg_lines_up_with_its_mask_in_a_dataset(tmp_path):
    root = make_csv(tmp_path / "d", categories=("bolt",))
    image, mask = _upright()
    _save_rotated(root / "bolt" / "images" / "turned.jpg", image, 6)  # stored 32x48, shown 48x32
    Image.fromarray(mask).save(root / "bolt" / "gt" / "turned.png")
    with open(root / "bolt" / "labels.csv", "a") as f:
        f.write("images/turned.jpg,1,gt/turned.png\n")
    test = FolderDataset(root, "test", image_size=32, **CSV)  # the sizes agree once the image is upright
    (item,) = [test[i] for i, s in enumerate(test.samples) if s.path.endswith("turned.jpg")]
    brightness = item["image"].mean(0)
    inside = item["mask"][0] > 0
    assert brightness[inside].mean() > brightness[~inside].mean() + 1.0


def test_exif_orientation_applies_to_masks(tmp_path):
    _, mask = _upright()
    path = tmp_path / "mask.png"  # PNG keeps EXIF too (eXIf chunk)
    _save_rotated(path, mask, 3)
    shown = load_mask(path, 32)[0].numpy()
    assert shown[3:11, 3:12].min() == 1 and shown[16:].max() == 0


def _bomb_png(path: Path, side=20000) -> None:
    """A PNG header claiming side x side pixels (no pixel data needed: PIL refuses it on open)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0")) +
                     chunk(b"IEND", b""))


def test_a_decompression_bomb_is_named(tmp_path):
    bomb = tmp_path / "huge.png"
    _bomb_png(bomb)
    for read in (shown_size, load_rgb, check_image, lambda p: load_image(p, 32)):
        with pytest.raises(DatasetError) as error:
            read(bomb)
        assert str(bomb) in str(error.value) and "\n" not in str(error.value)
    root = make_folders(tmp_path / "d", categories=("bolt",))
    _bomb_png(root / "bolt" / "train" / "n9.png")
    with pytest.raises(DatasetError, match="n9.png"):
        scan(root, None, "train", **FOLDERS)


def test_a_csv_with_a_byte_order_mark_is_read(tmp_path):
    root = make_csv(tmp_path / "d", categories=("bolt",))
    table = root / "bolt" / "labels.csv"
    table.write_text(table.read_text(), encoding="utf-8-sig")
    assert len(scan(root, None, "test", **CSV)) == 4


def test_a_latin1_csv_names_the_file(tmp_path):
    root = make_csv(tmp_path / "d", categories=("bolt",))
    shutil.copy(root / "bolt" / "images" / "ok0.png", root / "bolt" / "images" / "caf\u00e9.png")
    table = root / "bolt" / "labels.csv"
    table.write_bytes(table.read_bytes() + "images/caf\u00e9.png,0,\n".encode("latin-1"))
    with pytest.raises(DatasetError) as error:
        scan(root, None, "test", **CSV)
    assert str(table) in str(error.value) and "UTF-8" in str(error.value)


def test_a_repeated_csv_row_counts_once_with_a_warning(tmp_path, caplog):
    root = make_csv(tmp_path / "d", categories=("bolt",))
    table = root / "bolt" / "labels.csv"
    table.write_text(table.read_text() + "images/bad0.png,1,gt/bad0.png\n")
    with caplog.at_level(logging.WARNING):
        samples = scan(root, None, "test", **CSV)
    assert len(samples) == 4 and len({s.path for s in samples}) == 4
    assert "line 6" in caplog.text and str(table) in caplog.text


@pytest.mark.parametrize(("row", "says"), [("images/bad0.png,0,", "both normal and anomalous"),
                                           ("images/bad0.png,1,gt/bad1.png", "two masks")])
def test_an_image_listed_with_two_labels_or_masks_is_refused(tmp_path, row, says):
    root = make_csv(tmp_path / "d", categories=("bolt",))
    table = root / "bolt" / "labels.csv"
    table.write_text(table.read_text() + row + "\n")
    with pytest.raises(DatasetError, match=says):
        scan(root, None, "test", **CSV)


def test_jpeg_masks_warn(tmp_path, caplog):
    root = make_csv(tmp_path / "d", categories=("bolt",))
    for i in range(2):
        Image.open(root / "bolt" / "gt" / f"bad{i}.png").convert("RGB").save(root / "bolt" / "gt" / f"bad{i}.jpg")
    table = root / "bolt" / "labels.csv"
    table.write_text(table.read_text().replace(".png\n", ".jpg\n").replace("gt/bad0.png", "gt/bad0.jpg"))
    with caplog.at_level(logging.WARNING):
        scan(root, None, "test", **CSV)
    assert "JPEG" in caplog.text and "PNG" in caplog.text


def test_an_mvtec_class_without_test_good_is_named(tmp_path):
    root = make_tree(tmp_path / "mvtec")
    shutil.rmtree(root / "grid" / "test" / "good")
    with pytest.raises(DatasetError) as error:
        MVTecDataset(root, "test")
    assert "'grid'" in str(error.value) and "good" in str(error.value)
    assert len(MVTecDataset(root, "test", categories=["bottle"])) == 4  # the other class is fine


@pytest.mark.parametrize("reader", ["mvtec", "folder"])
def test_a_category_named_mean_is_refused(tmp_path, reader):
    if reader == "mvtec":
        root = make_tree(tmp_path / "d")
        shutil.copytree(root / "bottle", root / "mean")
        make = lambda: MVTecDataset(root, "test")  # noqa: E731
    else:
        root = make_folders(tmp_path / "d", categories=("bolt", "mean"))
        make = lambda: FolderDataset(root, "test", **FOLDERS)  # noqa: E731
    with pytest.raises(DatasetError, match="mean row"):
        make()


@pytest.mark.parametrize("category", ["../victim/ds/alpha", "{root}/alpha", ".."])
def test_a_folder_category_is_a_subfolder_name_never_a_path(tmp_path, category):
    root = make_folders(tmp_path / "d", categories=("alpha", "beta"))
    make_folders(tmp_path / "victim" / "ds", categories=("alpha",))  # a path there would be readable
    category = category.format(root=root)
    with pytest.raises(DatasetError, match="path"):
        FolderDataset(root, "test", categories=["beta", category], **FOLDERS)


def test_an_empty_row_selection_is_an_error_not_a_silent_no_op():
    from hydra.errors import HydraException

    from hydra_plugins.uniad_bench_sweeper import table_rows

    table = {"key": "S2", "rows": [{"id": "1", "overrides": ["model.fj=false"]}, {"id": "9", "overrides": ["a=b"]}]}
    assert [i for i, _ in table_rows(table, ["9"])] == ["9"]
    with pytest.raises(HydraException, match=r"select=\[\] selects no row.*1, 9"):
        table_rows(table, [])
