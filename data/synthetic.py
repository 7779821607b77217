"""Offline, deterministic MVTec-AD-layout dataset generated from images that ship with scikit-image.

Why: the suite must run meaningfully with no network (DESIGN.md section 6). Normal images are random
crops (textures) or slightly shifted, scaled and brightened views (objects) of one source image per
category, so they vary but share a distribution. Defective test images get one synthetic defect each
and an exact ground-truth mask: the mask is precisely the set of pixels the defect changed.

``ensure(root, ...)`` generates a dataset once under a name that encodes every parameter and reuses it
afterwards; generation is atomic (temp sibling + ``os.replace``), so racing processes are safe.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import data as skdata

from data.errors import DatasetError

VERSION = "v2"
# Grey textures of skimage, tinted (RGB gains) so categories differ in colour as well as structure.
TEXTURES = {
    "brick": (1.0, 0.62, 0.5),
    "grass": (0.62, 0.95, 0.45),
    "gravel": (0.92, 0.86, 0.74),
}
# Object-like photographs: (centre x, centre y, crop side) in source pixels, object roughly centred.
OBJECTS = {
    "coffee": (280.0, 205.0, 350.0),
    "coins": (192.0, 151.0, 270.0),
}
CATEGORIES = tuple(sorted([*TEXTURES, *OBJECTS]))
DEFECTS = ("missing", "patch", "scratch", "stain")
# Saturated, mutually distant stain colours (rust, oil, ink, ochre, mould).
_STAIN_COLOURS = np.array(
    [[150, 45, 20], [35, 28, 22], [30, 60, 170], [210, 175, 30], [70, 140, 60]], dtype=np.float64
)
_TEXTURE_CROP = 0.6  # a normal texture image shows this fraction of the 512 px source side (on average)
_MARKER = ".complete"


@functools.cache
def _source(name: str) -> np.ndarray:
    """The category's source image as HxWx3 uint8 (grey textures tinted, grey photographs stacked)."""
    image = getattr(skdata, name)()
    if name in TEXTURES:
        tinted = image[..., None].astype(np.float64) * np.array(TEXTURES[name])
        return np.clip(np.rint(tinted), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


@functools.cache
def _texture_canvas(name: str, size: int) -> np.ndarray:
    """A whole texture source at the scale of the normal images of side ``size`` (patch material)."""
    source = _source(name)
    side = max(size, round(source.shape[0] * size / (source.shape[0] * _TEXTURE_CROP)))
    return np.asarray(Image.fromarray(source).resize((side, side), Image.BILINEAR))


@functools.cache
def _texture_mean(name: str) -> np.ndarray:
    return _source(name).reshape(-1, 3).mean(axis=0)


def _jitter_brightness(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    scaled = image.astype(np.float64) * rng.uniform(0.93, 1.07)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def normal_image(category: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """One defect-free image (size x size x 3 uint8) of ``category``, varied by ``rng``."""
    source = _source(category)
    height, width = source.shape[:2]
    if category in TEXTURES:
        side = round(min(height, width) * rng.uniform(_TEXTURE_CROP - 0.05, _TEXTURE_CROP + 0.05))
        y0, x0 = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
        crop = source[y0 : y0 + side, x0 : x0 + side]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        if rng.random() < 0.5:
            crop = crop[::-1]
        image = Image.fromarray(np.ascontiguousarray(crop)).resize((size, size), Image.BILINEAR)
    else:
        cx, cy, side = OBJECTS[category]
        # tightly aligned, like MVTec AD's objects: +-1% scale and shift (a few pixels), so the normal
        # variation of an object stays well below one stride-16 feature cell
        side *= rng.uniform(0.99, 1.01)
        cx, cy = cx + rng.uniform(-0.01, 0.01) * side, cy + rng.uniform(-0.01, 0.01) * side
        box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        image = Image.fromarray(source).resize((size, size), Image.BILINEAR, box=box)
    return _jitter_brightness(np.asarray(image), rng)


def _draw(size: int, shape: str, points: list[tuple[float, float]], width: int = 0) -> np.ndarray:
    """Rasterise a polygon or a thick polyline (PIL, deterministic) into a boolean size x size mask."""
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "polygon":
        draw.polygon(points, fill=255)
    else:
        draw.line(points, fill=255, width=width, joint="curve")
    return np.asarray(canvas) > 0


def _blob(size: int, centre: np.ndarray, radius: float, rng: np.random.Generator) -> np.ndarray:
    """An irregular, star-shaped blob: 16 vertices with radii smoothed around the circle."""
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False) + rng.uniform(0, 2 * np.pi)
    radii = rng.uniform(0.55, 1.0, 16)
    radii = (radii + np.roll(radii, 1) + np.roll(radii, -1)) / 3 * radius
    points = [
        (centre[1] + r * np.cos(a), centre[0] + r * np.sin(a)) for r, a in zip(radii, angles, strict=True)
    ]
    return _draw(size, "polygon", points)


def _far_index(colours: np.ndarray, reference: np.ndarray, rng: np.random.Generator, k: int) -> int:
    """Index of one of the ``k`` colours farthest from ``reference`` (strong contrast, still some variety)."""
    order = np.argsort(-np.linalg.norm(colours - reference, axis=1), kind="stable")
    return int(order[rng.integers(0, min(k, len(colours)))])


def _region_mean(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    return image[region].mean(axis=0) if region.any() else np.full(3, 128.0)


def apply_defect(
    image: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    *,
    exclude: str | None = None,
    centre_range: tuple[float, float] = (0.15, 0.85),
) -> tuple[np.ndarray, np.ndarray]:
    """Add one defect of ``kind`` (see ``DEFECTS``) to an HxWx3 uint8 square image.

    Returns the defective copy and its boolean HxW mask, which is exactly the set of changed pixels.
    The defect centre lies in ``centre_range`` (fractions of the side); ``patch`` pastes texture from
    a texture other than ``exclude``. Defects span roughly 10-50% of the side with strong contrast, so a
    frozen ImageNet CNN sees them.
    """
    size = image.shape[0]
    if image.shape != (size, size, 3) or image.dtype != np.uint8:
        raise ValueError(f"expected a square HxWx3 uint8 image, got {image.shape} {image.dtype}")
    centre = rng.uniform(*centre_range, size=2) * size  # (y, x)
    out = image.astype(np.float64)
    if kind == "scratch":
        length, segments = rng.uniform(0.3, 0.5) * size, int(rng.integers(2, 5))
        angle = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.5, segments))
        steps = np.stack([np.cos(angle), np.sin(angle)], axis=1) * length / segments
        points = np.vstack([[0.0, 0.0], np.cumsum(steps, axis=0)])
        points += centre[::-1] - points.mean(axis=0)
        width = max(2, round(size * rng.uniform(0.015, 0.025)))
        region = _draw(size, "line", [tuple(p) for p in points], width)
        dark = _region_mean(image, region).mean() > 110
        out[region] = rng.uniform(0, 35, 3) if dark else rng.uniform(220, 255, 3)
    elif kind == "stain":
        region = _blob(size, centre, rng.uniform(0.07, 0.12) * size, rng)
        colour = _STAIN_COLOURS[_far_index(_STAIN_COLOURS, _region_mean(image, region), rng, k=3)]
        alpha = rng.uniform(0.7, 0.9)
        out[region] = out[region] * (1 - alpha) + colour * alpha
    elif kind == "patch":
        half_h, half_w = rng.uniform(0.07, 0.12, size=2) * size
        angle = rng.uniform(0, np.pi)
        corners = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        corners = corners @ rotation.T + centre[::-1]
        region = _draw(size, "polygon", [tuple(c) for c in corners])
        # foreign material: another texture, channels permuted so that it differs in colour too
        options = [(n, p) for n in TEXTURES if n != exclude for p in itertools.permutations(range(3))]
        means = np.array([_texture_mean(n)[list(p)] for n, p in options])
        name, perm = options[_far_index(means, _region_mean(image, region), rng, k=4)]
        canvas = _texture_canvas(name, size)
        y0, x0 = rng.integers(0, canvas.shape[0] - size + 1, size=2)
        out[region] = canvas[y0 : y0 + size, x0 : x0 + size][region][:, list(perm)]
    elif kind == "missing":
        region = _blob(size, centre, rng.uniform(0.07, 0.12) * size, rng)
        level = _region_mean(image, region).mean()
        base = rng.uniform(5, 35) if level > 110 else rng.uniform(205, 240)
        out[region] = base + rng.uniform(-12, 12, 3)  # one flat, slightly tinted colour
    else:
        raise ValueError(f"unknown defect {kind!r}; choose one of {', '.join(DEFECTS)}")
    defective = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    mask = (defective != image).any(axis=2)
    return defective, mask


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, compress_level=1)  # fast; PIL writes no timestamps: deterministic


def generate(
    out_dir: str | os.PathLike,
    *,
    seed: int = 0,
    image_size: int = 256,
    n_train: int = 60,
    n_test_good: int = 10,
    n_test_defect: int = 5,
) -> Path:
    """Write the dataset into ``out_dir`` (MVTec AD layout) and return its path.

    Per category: ``n_train`` train images, ``n_test_good`` good test images and ``n_test_defect``
    defective test images per defect type, with masks (0/255, mode L). Every image has its own random
    stream derived from (seed, category, split, defect, index), so the same seed gives identical files.
    """
    if seed < 0 or image_size < 32 or n_train < 1 or n_test_good < 1 or n_test_defect < 1:
        raise ValueError(
            f"need seed >= 0, image_size >= 32 and counts >= 1; got seed={seed}, image_size={image_size}, "
            f"n_train={n_train}, n_test_good={n_test_good}, n_test_defect={n_test_defect}"
        )
    out = Path(out_dir)
    for c, category in enumerate(CATEGORIES):
        centre_range = (0.15, 0.85) if category in TEXTURES else (0.3, 0.7)
        for i in range(n_train):
            rng = np.random.default_rng([seed, c, 0, 0, i])
            _save(normal_image(category, image_size, rng), out / category / "train" / "good" / f"{i:03d}.png")
        for i in range(n_test_good):
            rng = np.random.default_rng([seed, c, 1, 0, i])
            _save(normal_image(category, image_size, rng), out / category / "test" / "good" / f"{i:03d}.png")
        for d, defect in enumerate(DEFECTS):
            for i in range(n_test_defect):
                rng = np.random.default_rng([seed, c, 2, d, i])
                image = normal_image(category, image_size, rng)
                defective, mask = apply_defect(
                    image, defect, rng, exclude=category, centre_range=centre_range
                )
                _save(defective, out / category / "test" / defect / f"{i:03d}.png")
                mask_png = mask.astype(np.uint8) * 255
                _save(mask_png, out / category / "ground_truth" / defect / f"{i:03d}_mask.png")
    return out


def dataset_name(
    *, seed: int = 0, image_size: int = 256, n_train: int = 60, n_test_good: int = 10, n_test_defect: int = 5
) -> str:
    """The folder name that encodes the generator version and every parameter."""
    return f"synthetic-{VERSION}-s{seed}-{image_size}px-{n_train}-{n_test_good}-{n_test_defect}"


def ensure(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    image_size: int = 256,
    n_train: int = 60,
    n_test_good: int = 10,
    n_test_defect: int = 5,
) -> Path:
    """Path of the dataset for these ``generate`` arguments under ``root``, generating it on first use.

    A finished dataset has a ``.complete`` marker and is reused as is. Otherwise it is generated into a
    temporary sibling folder and moved into place with ``os.replace``; if another process finished
    first, its copy wins and ours is discarded.
    """
    kwargs = dict(
        seed=seed,
        image_size=image_size,
        n_train=n_train,
        n_test_good=n_test_good,
        n_test_defect=n_test_defect,
    )
    base = Path(root).expanduser()
    target = base / dataset_name(**kwargs)
    if (target / _MARKER).is_file():
        return target
    if target.exists():
        raise DatasetError(
            f"{target} exists but has no {_MARKER} marker (interrupted?): delete it to regenerate"
        )
    base.mkdir(parents=True, exist_ok=True)
    print(f"generating the synthetic dataset into {target} (first use; reused afterwards)", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=base))
    try:
        generate(tmp, **kwargs)
        (tmp / _MARKER).write_text(target.name + "\n")
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / _MARKER).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target
