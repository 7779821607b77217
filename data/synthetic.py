"""Offline, deterministic MVTec-AD-layout dataset: scikit-image's photographs and textures plus procedural ones.

Why: the suite must run meaningfully with no network, and tell ablations apart, so the dataset mixes
textures and tightly aligned objects as MVTec AD does and its defects
range from obvious to small and faint. Normal images are random crops (textures) or slightly shifted,
scaled and brightened views (objects) of one source image per category. Each defective test image gets
one defect whose size and strength are drawn from the configured ranges (``defect_size``,
``defect_strength``); its ground-truth mask is exactly the set of pixels the defect changed.

``ensure(root, **params)`` generates a dataset once under a name that encodes the generator version and
every parameter, and reuses it afterwards; generation is atomic (temp sibling + ``os.replace``), so racing
processes are safe. The parameters come from ``conf/data/synthetic.yaml`` (no defaults here).
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from skimage import data as skdata

from data.errors import DatasetError
from data.mvtec import MVTecDataset
from rules import INT, REAL, SEED

VERSION = "v3"
# Grey scikit-image textures, tinted (RGB gains) so categories differ in colour as well as structure.
SKIMAGE_TEXTURES = {
    "brick": (1.0, 0.62, 0.5),
    "grass": (0.62, 0.95, 0.45),
    "gravel": (0.92, 0.86, 0.74),
}
# Procedural textures (512 px sources drawn by this module, identical for every seed).
PROCEDURAL_TEXTURES = ("carpet", "wood")
TEXTURES = (*SKIMAGE_TEXTURES, *PROCEDURAL_TEXTURES)
# Object-like photographs: scikit-image function and (centre x, centre y, crop side) in source pixels.
OBJECTS = {
    "chelsea": ("chelsea", 262.0, 150.0, 280.0),
    "coffee": ("coffee", 280.0, 205.0, 350.0),
    "coins": ("coins", 192.0, 151.0, 270.0),
    "logo": ("logo", 250.0, 250.0, 470.0),
    "retina": ("retina", 256.0, 256.0, 490.0),  # on a 512 px copy of the 1411 px source
}
CATEGORIES = tuple(sorted([*TEXTURES, *OBJECTS]))
DEFECTS = ("colour", "missing", "patch", "scratch", "stain")
# Saturated, mutually distant stain colours (rust, oil, ink, ochre, mould).
_STAIN_COLOURS = np.array(
    [[150, 45, 20], [35, 28, 22], [30, 60, 170], [210, 175, 30], [70, 140, 60]], dtype=np.float64
)
_TEXTURE_CROP = 0.6  # a normal texture image shows this fraction of the 512 px source side (on average)
_CENTRE_RANGE = {"texture": (0.12, 0.88), "object": (0.3, 0.7)}  # where a defect centre may fall
_MIN_DEFECT_PIXELS = 6  # a drawn defect that changes fewer pixels is redrawn (no empty masks)
_MARKER = ".complete"
# generate()'s parameters, all given by conf/data/synthetic.yaml's ``generator`` (the profile may scale counts)
PARAMETERS = ("seed", "image_size", "n_train", "n_test_good", "n_test_defect", "defect_size", "defect_strength",
              "jitter", "brightness")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a cells x cells random grid upsampled bicubically to size x size."""
    grid = Image.fromarray(rng.random((cells, cells)).astype(np.float32), mode="F")
    return np.asarray(grid.resize((size, size), Image.BICUBIC)).clip(0, 1).astype(np.float64)


def _wood(size: int = 512) -> np.ndarray:
    """Planks of wood: growth rings around a far centre, warped by smooth noise, with fibre streaks."""
    rng = np.random.default_rng(zlib.crc32(b"wood"))
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    radius = np.hypot((x + 1.6 * size) * 0.35, y - 0.4 * size)
    rings = (radius / 9.0 + 2.5 * _smooth_noise(rng, size, 6)) % 1.0
    grain = rings**2.5
    fibres = np.asarray(
        Image.fromarray(rng.random((size // 8, size)).astype(np.float32), mode="F").resize((size, size), Image.BILINEAR)
    )
    tone = 0.65 * grain + 0.2 * fibres + 0.15 * _smooth_noise(rng, size, 4)
    light, dark = np.array([214.0, 168.0, 112.0]), np.array([128.0, 78.0, 42.0])
    image = light + (dark - light) * tone[..., None]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _carpet(size: int = 512) -> np.ndarray:
    """A basket weave: 8-px cells of horizontal and vertical thread bundles, fibre noise, slow dye changes."""
    rng = np.random.default_rng(zlib.crc32(b"carpet"))
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    period = 8.0
    checker = ((x // period) + (y // period)) % 2
    across = 0.5 + 0.5 * np.cos(2 * np.pi * (y % period) / period * 1.5)
    along = 0.5 + 0.5 * np.cos(2 * np.pi * (x % period) / period * 1.5)
    weave = np.where(checker == 0, across, along)
    fibre = rng.random((size, size))
    tone = 0.6 * weave + 0.25 * fibre + 0.15 * _smooth_noise(rng, size, 5)
    light, dark = np.array([150.0, 175.0, 190.0]), np.array([40.0, 62.0, 92.0])
    image = dark + (light - dark) * tone[..., None]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


@functools.cache
def _source(name: str) -> np.ndarray:
    """The category's source image as HxWx3 uint8 (grey textures tinted, grey photographs stacked)."""
    if name == "wood":
        return _wood()
    if name == "carpet":
        return _carpet()
    if name in SKIMAGE_TEXTURES:
        image = getattr(skdata, name)()
        tinted = image[..., None].astype(np.float64) * np.array(SKIMAGE_TEXTURES[name])
        return np.clip(np.rint(tinted), 0, 255).astype(np.uint8)
    image = getattr(skdata, OBJECTS[name][0])()
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.shape[2] == 4:  # the logo: RGBA composited on white
        alpha = image[..., 3:].astype(np.float64) / 255
        image = np.rint(image[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    if name == "retina":  # 1411 px: shrink once so every view resizes from a small source
        image = np.asarray(Image.fromarray(image).resize((512, 512), Image.BILINEAR))
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


def normal_image(category: str, size: int, rng: np.random.Generator, *, jitter: float,
                 brightness: float) -> np.ndarray:
    """One defect-free image (size x size x 3 uint8) of ``category``, varied by ``rng``.

    Objects are shifted and scaled by up to ``jitter`` of their side (MVTec AD's objects are tightly
    aligned); every image's brightness is scaled by a factor within 1 +- ``brightness``.
    """
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
        _, cx, cy, side = OBJECTS[category]
        side *= rng.uniform(1 - jitter, 1 + jitter)
        cx, cy = cx + rng.uniform(-jitter, jitter) * side, cy + rng.uniform(-jitter, jitter) * side
        box = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
        image = Image.fromarray(source).resize((size, size), Image.BILINEAR, box=box)
    scaled = np.asarray(image).astype(np.float64) * rng.uniform(1 - brightness, 1 + brightness)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def _draw(size: int, shape: str, points: list[tuple[float, float]], width: int = 0) -> np.ndarray:
    """Rasterise a polygon or a polyline (PIL, deterministic) into a boolean size x size mask."""
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
    """Index of one of the ``k`` colours farthest from ``reference`` (contrast, still some variety)."""
    order = np.argsort(-np.linalg.norm(colours - reference, axis=1), kind="stable")
    return int(order[rng.integers(0, min(k, len(colours)))])


def _region_mean(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    return image[region].mean(axis=0) if region.any() else np.full(3, 128.0)


def _background(image: np.ndarray, category: str | None) -> np.ndarray:
    """What a hole shows: an object's backdrop (median of the border), a texture's darkest tone."""
    if category in OBJECTS:
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        return np.median(border, axis=0)
    return np.percentile(image.reshape(-1, 3), 2, axis=0) * 0.5


def _one_defect(image: np.ndarray, kind: str, rng: np.random.Generator, *, category: str | None,
                radius: float, strength: float, centre_range: tuple[float, float]) -> np.ndarray:
    """The defective image as float64 (see ``apply_defect``)."""
    size = image.shape[0]
    centre = rng.uniform(*centre_range, size=2) * size  # (y, x)
    out = image.astype(np.float64)
    if kind == "scratch":  # a thin polyline, darker or lighter than its surroundings
        length, segments = rng.uniform(2.5, 4.0) * radius, int(rng.integers(2, 5))
        angle = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.4, segments))
        steps = np.stack([np.cos(angle), np.sin(angle)], axis=1) * length / segments
        points = np.vstack([[0.0, 0.0], np.cumsum(steps, axis=0)])
        points += centre[::-1] - points.mean(axis=0)
        width = max(1, round(size / 256 * rng.uniform(1.0, 3.5)))
        region = _draw(size, "line", [tuple(p) for p in points], width)
        target = 0.0 if _region_mean(image, region).mean() > 110 else 255.0
        out[region] += strength * (target - out[region])
    elif kind == "stain":  # a translucent blob of a foreign colour
        region = _blob(size, centre, radius, rng)
        colour = _STAIN_COLOURS[_far_index(_STAIN_COLOURS, _region_mean(image, region), rng, k=3)]
        alpha = 0.85 * strength
        out[region] = out[region] * (1 - alpha) + colour * alpha
    elif kind == "colour":  # a wrong colour: the same structure, channels re-weighted (brightness kept)
        region = _blob(size, centre, 1.3 * radius, rng)
        direction = rng.normal(size=3)
        direction -= direction.mean()
        direction /= np.linalg.norm(direction) + 1e-12
        out[region] = out[region] * (1 + 1.2 * strength * direction)
    elif kind == "patch":  # foreign material: another texture, channels permuted
        half_h, half_w = rng.uniform(0.6, 1.0, size=2) * radius
        angle = rng.uniform(0, np.pi)
        corners = np.array([[-half_w, -half_h], [half_w, -half_h], [half_w, half_h], [-half_w, half_h]])
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        corners = corners @ rotation.T + centre[::-1]
        region = _draw(size, "polygon", [tuple(c) for c in corners])
        options = [(n, p) for n in TEXTURES if n != category for p in itertools.permutations(range(3))]
        means = np.array([_texture_mean(n)[list(p)] for n, p in options])
        name, perm = options[_far_index(means, _region_mean(image, region), rng, k=6)]
        canvas = _texture_canvas(name, size)
        y0, x0 = rng.integers(0, canvas.shape[0] - size + 1, size=2)
        alpha = 0.2 + 0.8 * strength
        foreign = canvas[y0 : y0 + size, x0 : x0 + size][region][:, list(perm)]
        out[region] = out[region] * (1 - alpha) + foreign * alpha
    elif kind == "missing":  # a small piece gone: the backdrop (objects) or a hole (textures) shows
        region = _blob(size, centre, 0.7 * radius, rng)
        alpha = min(1.0, 0.4 + strength)
        hole = _background(image, category) + rng.uniform(-6, 6, 3)
        out[region] = out[region] * (1 - alpha) + hole * alpha
    else:
        raise ValueError(f"unknown defect {kind!r}; choose one of {', '.join(DEFECTS)}")
    return out


def apply_defect(
    image: np.ndarray,
    kind: str,
    rng: np.random.Generator,
    *,
    category: str | None = None,
    size_range: tuple[float, float],
    strength_range: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Add one defect of ``kind`` (see ``DEFECTS``) to an HxWx3 uint8 square image of ``category``.

    The defect's radius (a fraction of the side) and its strength (0 = invisible, 1 = full contrast)
    are drawn independently from ``size_range`` and ``strength_range``, so small-and-strong and
    large-and-faint defects both occur, as in MVTec AD. Objects get defects near the centre, on the
    object. Returns the defective copy and its boolean HxW mask, which is exactly the set of changed
    pixels (a draw that changes fewer than a few pixels is redrawn).
    """
    size = image.shape[0]
    if image.shape != (size, size, 3) or image.dtype != np.uint8:
        raise ValueError(f"expected a square HxWx3 uint8 image, got {image.shape} {image.dtype}")
    if kind not in DEFECTS:
        raise ValueError(f"unknown defect {kind!r}; choose one of {', '.join(DEFECTS)}")
    centre_range = _CENTRE_RANGE["object" if category in OBJECTS else "texture"]
    while True:
        radius = rng.uniform(*size_range) * size
        strength = rng.uniform(*strength_range)
        out = _one_defect(image, kind, rng, category=category, radius=radius, strength=strength,
                          centre_range=centre_range)
        defective = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        mask = (defective != image).any(axis=2)
        if mask.sum() >= _MIN_DEFECT_PIXELS:
            return defective, mask


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, compress_level=1)  # fast; PIL writes no timestamps: deterministic


def _check(params: dict) -> None:
    counts = ("image_size", "n_train", "n_test_good", "n_test_defect")
    ranges = ("defect_size", "defect_strength")
    bad = (
        params["seed"] < 0 or params["image_size"] < 32 or any(params[k] < 1 for k in counts[1:])
        or any(not (len(params[k]) == 2 and 0 < params[k][0] <= params[k][1] <= 1) for k in ranges)
        or not 0 <= params["jitter"] < 0.2 or not 0 <= params["brightness"] < 0.5
    )
    if bad:
        raise ValueError(
            "synthetic generator: need seed >= 0, image_size >= 32, counts >= 1, defect_size and "
            "defect_strength as [low, high] within (0, 1], jitter in [0, 0.2), brightness in [0, 0.5); got "
            + ", ".join(f"{k}={v}" for k, v in params.items())
        )


def generate(out_dir: str | os.PathLike, *, seed: int, image_size: int, n_train: int, n_test_good: int,
             n_test_defect: int, defect_size: list[float], defect_strength: list[float], jitter: float,
             brightness: float) -> Path:
    """Write the dataset into ``out_dir`` (MVTec AD layout) and return its path.

    Per category: ``n_train`` train images, ``n_test_good`` good test images and ``n_test_defect``
    defective test images per defect type, with masks (0/255, mode L). Every image has its own random
    stream derived from (seed, category, split, defect, index), so the same seed gives identical files.
    """
    params = dict(seed=seed, image_size=image_size, n_train=n_train, n_test_good=n_test_good,
                  n_test_defect=n_test_defect, defect_size=list(defect_size),
                  defect_strength=list(defect_strength), jitter=jitter, brightness=brightness)
    _check(params)
    look = dict(jitter=jitter, brightness=brightness)
    out = Path(out_dir)
    for c, category in enumerate(CATEGORIES):
        for i in range(n_train):
            rng = np.random.default_rng([seed, c, 0, 0, i])
            image = normal_image(category, image_size, rng, **look)
            _save(image, out / category / "train" / "good" / f"{i:03d}.png")
        for i in range(n_test_good):
            rng = np.random.default_rng([seed, c, 1, 0, i])
            _save(normal_image(category, image_size, rng, **look), out / category / "test" / "good" / f"{i:03d}.png")
        for d, defect in enumerate(DEFECTS):
            for i in range(n_test_defect):
                rng = np.random.default_rng([seed, c, 2, d, i])
                image = normal_image(category, image_size, rng, **look)
                defective, mask = apply_defect(image, defect, rng, category=category,
                                               size_range=defect_size, strength_range=defect_strength)
                _save(defective, out / category / "test" / defect / f"{i:03d}.png")
                mask_png = mask.astype(np.uint8) * 255
                _save(mask_png, out / category / "ground_truth" / defect / f"{i:03d}_mask.png")
    return out


def dataset_name(*, seed: int, image_size: int, n_train: int, n_test_good: int, n_test_defect: int,
                 **rest) -> str:
    """The folder name: generator version, seed, size and counts, and a digest of the other parameters."""
    digest = hashlib.sha256(json.dumps(rest, sort_keys=True, default=list).encode()).hexdigest()[:8]
    return f"synthetic-{VERSION}-s{seed}-{image_size}px-{n_train}-{n_test_good}-{n_test_defect}-{digest}"


def ensure(root: str | os.PathLike, **params) -> Path:
    """Path of the dataset for these ``generate`` parameters under ``root``, generating it on first use.

    A finished dataset has a ``.complete`` marker and is reused as is. Otherwise it is generated into a
    temporary sibling folder and moved into place with ``os.replace``; if another process finished
    first, its copy wins and ours is discarded.
    """
    if set(params) != set(PARAMETERS):
        raise ValueError(
            f"synthetic generator: expected the parameters {', '.join(PARAMETERS)} (conf/data/synthetic.yaml "
            f"generator), got {', '.join(sorted(params))}"
        )
    params = {k: list(v) if isinstance(v, (list, tuple)) else v for k, v in params.items()}
    base = Path(root).expanduser()
    target = base / dataset_name(**params)
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
        generate(tmp, **params)
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


class SyntheticDataset(MVTecDataset):
    """The generated dataset for ``generator``'s parameters under ``root`` (generated on first use by
    ``ensure``), read as the MVTec AD layout (``conf/data/synthetic.yaml``)."""

    RULES = {  # ``generate``'s parameters
        "generator.seed": SEED, "generator.image_size": INT(32), "generator.n_train": INT(1),
        "generator.n_test_good": INT(1), "generator.n_test_defect": INT(1),
        "generator.defect_size": REAL(0, 0.5, open_low=True, items=True, length=2, ordered=True),
        "generator.defect_strength": REAL(0, 1, items=True, length=2, ordered=True),
        "generator.jitter": REAL(0, 0.5), "generator.brightness": REAL(0, 1, open_high=True),
    }

    def __init__(self, root: str | os.PathLike, split: str, *, generator: dict, categories: list[str] | None,
                 image_size: int, follow_links: bool = False):
        super().__init__(ensure(root, **dict(generator)), split, categories=categories, image_size=image_size,
                         follow_links=follow_links)
