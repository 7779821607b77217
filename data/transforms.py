"""Image and mask loading exactly as the official UniAD does it (so inputs, and hence numbers, match).

Images: RGB (grey becomes 3-channel), PIL antialiased bilinear resize to SxS, ToTensor, ImageNet
normalisation. Masks: PIL "L", nearest resize, 1xSxS float with values 0/1.

``load_rgb`` and ``read_mask`` are the one place where files become images (every dataset reader uses
them, and ``shown_size`` reads the size from the header): the EXIF orientation is applied, as every image
viewer does (a JPEG stored sideways or upside down is read upright, so it lines up with its mask); 16-bit
and 32-bit greyscale files are scaled to 8 bits (PIL's own ``convert("RGB")`` clips them, turning a
16-bit image almost white). ``check_image`` decodes a file completely and returns its sha256, so a
truncated or empty file is found before training, not in the middle of it. A file too large to decode
safely (PIL's decompression-bomb limit) is a ``DatasetError`` naming it, like an unreadable one.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageOps

from data.errors import DatasetError

# EXIF orientations 5-8 turn the picture by 90 degrees: the stored width is the shown height
_TURNED = (5, 6, 7, 8)
_ORIENTATION = 0x0112

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_input(image: Image.Image, size: int, resample: int = Image.BILINEAR) -> torch.Tensor:
    """PIL image -> normalised float tensor [3, size, size] (PIL resize antialiases when shrinking)."""
    image = image.convert("RGB").resize((size, size), resample)
    return TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)


# PIL modes of high-bit-depth greyscale files and the value of their white
_WIDE_GREY = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": 65535}


def to_rgb(image: Image.Image) -> Image.Image:
    """An opened PIL image as 8-bit RGB; 16-bit greyscale (modes I;16*, I) is scaled by 255/65535 and
    float greyscale (mode F) is read as [0, 1] when its values lie there, else as [0, 255]."""
    if image.mode in _WIDE_GREY or image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            white = 1.0 if values.size and np.nanmax(values) <= 1.0 else 255.0
        else:
            white = _WIDE_GREY[image.mode]
        grey = np.clip(np.rint(values * (255.0 / white)), 0, 255).astype(np.uint8)
        image = Image.fromarray(grey, mode="L")
    return image.convert("RGB")


def _unreadable(path, error: BaseException) -> DatasetError:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return DatasetError(f"unreadable image {path} ({reason}): replace or remove the file")


def _open(path: str | os.PathLike) -> Image.Image:
    """``Image.open`` whose decompression-bomb refusal names the file (a ``DatasetError``)."""
    try:
        return Image.open(path)
    except Image.DecompressionBombError as error:
        raise _unreadable(path, error) from None


def upright(image: Image.Image) -> Image.Image:
    """The image as shown: its EXIF orientation applied (the image itself when it has none)."""
    if image.getexif().get(_ORIENTATION, 1) in (None, 1):
        return image
    return ImageOps.exif_transpose(image)


def _header_orientation(image: Image.Image) -> int | None:
    """The EXIF orientation known without decoding: PIL reads a PNG's eXIf chunk placed after the pixels
    only by decoding them (JPEG, TIFF and WebP keep it in the header), so such a PNG counts as upright."""
    if image.format == "PNG" and "exif" not in image.info:
        return None
    return image.getexif().get(_ORIENTATION)


def shown_size(path: str | os.PathLike) -> tuple[int, int]:
    """Width and height of the image as shown (EXIF orientation applied), from the header only.

    An unreadable file (or one over the decompression-bomb limit) is a ``DatasetError`` naming it.
    """
    try:
        with _open(path) as image:
            width, height = image.size
            turned = _header_orientation(image) in _TURNED
    except DatasetError:
        raise
    except (OSError, ValueError, SyntaxError) as error:
        raise _unreadable(path, error) from None
    return (height, width) if turned else (width, height)


def load_rgb(path: str | os.PathLike) -> Image.Image:
    """Read an image file as an upright 8-bit RGB PIL image (whatever its bit depth; see ``to_rgb``)."""
    with _open(path) as image:
        image.load()
        return to_rgb(upright(image))


def read_mask(path: str | os.PathLike) -> Image.Image:
    """Read a ground-truth mask as an upright PIL "L" image with 255 where the file is > 0 (any bit depth)."""
    with _open(path) as mask:
        mask = upright(mask)
        # 8-bit files as the official code reads them (convert("L")); wider ones by their raw values,
        # which convert("L") would clip
        wide = mask.mode in _WIDE_GREY or mask.mode == "F"
        values = np.asarray(mask) if wide else np.asarray(mask.convert("L"))
    return Image.fromarray(((values > 0) * 255).astype(np.uint8), mode="L")


def load_image(path: str | os.PathLike, size: int) -> torch.Tensor:
    """Read an image file as RGB and return the network input, a tensor [3, size, size]."""
    return to_input(load_rgb(path), size)


def load_mask(path: str | os.PathLike, size: int) -> torch.Tensor:
    """Read a ground-truth mask and return a float tensor [1, size, size] with 1 where the mask is > 0."""
    mask = read_mask(path).resize((size, size), Image.NEAREST)
    return torch.from_numpy(np.asarray(mask) > 0).float().unsqueeze(0)


def check_image(path: str | os.PathLike) -> str:
    """Decode ``path`` completely (a truncated or empty file fails here) and return its content's sha256.

    Raises ``DatasetError`` naming the file. Reads the file once: the hash and the decode share the bytes.
    """
    try:
        blob = Path(path).read_bytes()
        if not blob:
            raise OSError("empty file")
        with Image.open(io.BytesIO(blob)) as image:
            image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise _unreadable(path, error) from None
    return hashlib.sha256(blob).hexdigest()


def denormalize(image: torch.Tensor) -> np.ndarray:
    """Undo the ImageNet normalisation of a [3, H, W] (or [1, 3, H, W]) tensor: HxWx3 float in [0, 1]."""
    image = image.detach().cpu().float()
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f"expected a [3, H, W] image tensor, got shape {tuple(image.shape)}")
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (image * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def center_crop(tensor: torch.Tensor, size: int) -> torch.Tensor:
    """The central ``size`` x ``size`` window of a [..., H, W] tensor, offsets rounded as torchvision's
    ``CenterCrop`` (``int(round((H - size) / 2))``), so crop-after-resize equals Resize + CenterCrop."""
    h, w = tensor.shape[-2:]
    if size > min(h, w):
        raise ValueError(f"cannot centre-crop {size}x{size} from a {h}x{w} image: "
                         "data.resize must be >= data.image_size")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return tensor[..., top : top + size, left : left + size]
