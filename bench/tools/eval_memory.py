"""Peak memory of the streamed evaluation: ``python -m bench.tools.eval_memory [--classes 15 --images 100 --size 224]``.

Evaluates a stand-in detector (its anomaly map is a blurred copy of the image's red channel, so no
training is needed) on random images with blob masks, with ``eval.metrics=all``, and prints the peak
RSS. Because evaluation reduces each class to its metrics before reading the next, the peak should
not grow with the number of classes.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from scipy import ndimage

from bench.evaluate import evaluate
from bench.tools.measure import PeakMemory


class _Sample:
    def __init__(self, category: str):
        self.category = category


class RandomBlobDataset(torch.utils.data.Dataset):
    """``classes`` x ``images`` items; every other image carries a random blob mask."""

    has_masks = True  # the data protocol (data/protocol.py): pixel metrics are computed

    def __init__(self, classes: int, images: int, size: int, seed: int = 0):
        self.size, self.seed, self.images = size, seed, images
        self.categories = [f"class{c:02d}" for c in range(classes)]
        self.samples = [_Sample(c) for c in self.categories for _ in range(images)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        label = index % 2
        mask = np.zeros((self.size, self.size), bool)
        if label:
            noise = ndimage.gaussian_filter(rng.standard_normal((self.size, self.size)), self.size / 20)
            mask = noise > np.quantile(noise, 0.97)
        image = rng.standard_normal((3, self.size, self.size)).astype(np.float32)
        image[0][mask] += 3.0
        return {"image": torch.from_numpy(image), "mask": torch.from_numpy(mask[None].astype(np.float32)),
                "label": label, "category": self.samples[index].category}


class BlurDetector(torch.nn.Module):
    """Anomaly map = blurred red channel: cheap, and correlated with the masks."""

    def target(self, images):
        return images[:, :1]

    def reconstruct(self, target):
        return torch.zeros_like(target)

    def anomaly_map(self, target, rec, size):
        return F.avg_pool2d(target - rec, 9, stride=1, padding=4)

    def image_scores(self, target, rec, amap):
        return None  # the suite's image score (eval.score of the pooled map)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=15)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    cfg = OmegaConf.create({"metrics": "all", "pool_size": 16, "score": "max", "save_maps": 0,
                            "batch_size": 32, "normal_pixel_budget": None, "precision": "fp32"})
    dataset = RandomBlobDataset(args.classes, args.images, args.size)
    device = torch.device("cpu")
    memory = PeakMemory(device)
    memory.reset()
    t0 = time.perf_counter()
    metrics, _ = evaluate(BlurDetector(), dataset, cfg, device=device)
    peak = memory.phase()
    print(f"{args.classes} classes x {args.images} images at {args.size} px, eval.metrics=all: "
          f"{time.perf_counter() - t0:.1f} s, peak RSS {peak['peak_mb']:.0f} MiB ({peak['extra_mb']:.0f} MiB over the "
          f"{memory.resident_at_reset:.0f} MiB resident before evaluation)")
    print({k: round(v, 4) for k, v in metrics["mean"].items()})


if __name__ == "__main__":
    main()
