"""Resize then centre-crop (``data.resize``): any reader's items, read at ``data.resize`` pixels, cropped to
the central ``data.image_size`` window (Dinomaly's inputs: resized to 448, centre-cropped to 392; its
``dataset.py`` ``get_data_transforms``). The network sees ``data.image_size``; the border is dropped."""

from __future__ import annotations

from torch.utils.data import Dataset

from data.transforms import center_crop


class CenterCropped(Dataset):
    """A reader (``data.protocol.AnomalyDataset``) whose images and masks are centre-cropped to ``size``;
    everything else (samples, categories, files, verify, ...) is the reader's."""

    def __init__(self, dataset, size: int):
        self.dataset = dataset
        self.size = int(size)

    def __getattr__(self, name: str):
        if name == "dataset":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.dataset[index])
        item["image"] = center_crop(item["image"], self.size)
        item["mask"] = center_crop(item["mask"], self.size)
        return item
