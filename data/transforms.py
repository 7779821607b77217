"""Image and mask loading exactly as the official UniAD does it (so inputs, and hence numbers, match).

Images: RGB (grey becomes 3-channel), PIL antialiased bilinear resize to SxS, ToTensor, ImageNet
normalisation. Masks: PIL "L", nearest resize, 1xSxS float with values 0/1.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_input(image: Image.Image, size: int, resample: int = Image.BILINEAR) -> torch.Tensor:
    """PIL image -> normalised float tensor [3, size, size] (PIL resize antialiases when shrinking)."""
    image = image.convert("RGB").resize((size, size), resample)
    return TF.normalize(TF.to_tensor(image), IMAGENET_MEAN, IMAGENET_STD)


def load_image(path: str | os.PathLike, size: int) -> torch.Tensor:
    """Read an image file as RGB and return the network input, a tensor [3, size, size]."""
    with Image.open(path) as image:
        return to_input(image, size)


def load_mask(path: str | os.PathLike, size: int) -> torch.Tensor:
    """Read a ground-truth mask and return a float tensor [1, size, size] with 1 where the mask is > 0."""
    with Image.open(path) as mask:
        mask = mask.convert("L").resize((size, size), Image.NEAREST)
        return torch.from_numpy(np.asarray(mask) > 0).float().unsqueeze(0)


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
