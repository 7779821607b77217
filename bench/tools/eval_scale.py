"""Time and peak memory of the exact evaluation of one Real-IAD-sized class: ``python -m bench.tools.eval_scale``.

One class of ``--images`` test images (default 7,600: twice Real-IAD's average class, 114,585 test
images over 30 classes) at ``--size`` px (224: 381 million pixels) goes through
``bench.evaluate.evaluate`` with ``eval.metrics=all`` (the seven metrics, exact), as a job would
stream it. The images are synthetic with defect regions of the kinds industrial test sets hold:
``--anomalous`` of them (default a third) carry one to three defects, each an irregular blob
(pit, stain, missing part) or a thin scratch, of 10 pixels to 3% of the image (log-uniform); the
stand-in detector's map (a blurred red channel) responds to each defect with its own strength and
has smooth background structure, so scores are continuous (almost every pixel a distinct
threshold: the hardest case for exact metrics) and the metrics are far from saturated.

Prints the time of the whole evaluation and of its metrics stage, the peak memory (CPU: the
resident set's high-water mark; CUDA: allocated bytes) and its extra over what was resident before,
the seven values, and other processes' share of the CPUs during the run.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from omegaconf import OmegaConf

from bench.evaluate import evaluate
from bench.tools.eval_memory import BlurDetector
from bench.tools.measure import OtherCpuUse, PeakMemory, device_name


class _Sample:
    def __init__(self, category: str):
        self.category = category


def defect_mask(rng: np.random.Generator, size: int) -> np.ndarray:
    """1 to 3 defects in a ``size`` x ``size`` mask: irregular blobs or thin scratches, 10 px to 3% of the image."""
    mask = np.zeros((size, size), dtype=bool)
    for _ in range(int(rng.integers(1, 4))):
        area = float(np.exp(rng.uniform(np.log(10.0), np.log(0.03 * size * size))))
        cy, cx = rng.uniform(0.1, 0.9, 2) * size
        angle = rng.uniform(0.0, np.pi)
        scratch = rng.random() < 0.3
        if scratch:  # 1.5-3 px wide
            width = rng.uniform(1.5, 3.0)
            length = min(area / width, 0.8 * size)
            reach = length / 2 + width
        else:  # a blob with a ragged edge: its radius varies with the angle (harmonics 2 to 6)
            ratio = rng.uniform(1.0, 3.0)
            a = np.sqrt(area * ratio / np.pi)
            amplitude = rng.uniform(0.0, 0.12, (5, 1, 1))
            phase = rng.uniform(0, 2 * np.pi, (5, 1, 1))
            reach = 1.7 * a + 1
        y0, y1 = max(0, int(cy - reach)), min(size, int(cy + reach) + 2)
        x0, x1 = max(0, int(cx - reach)), min(size, int(cx + reach) + 2)
        dy, dx = np.mgrid[y0:y1, x0:x1] - np.array([cy, cx])[:, None, None]
        u, v = dx * np.cos(angle) + dy * np.sin(angle), -dx * np.sin(angle) + dy * np.cos(angle)
        if scratch:
            region = (np.abs(v) <= width / 2) & (np.abs(u) <= length / 2)
        else:
            theta = np.arctan2(v * ratio, u)
            edge = (amplitude * np.cos(np.arange(2, 7)[:, None, None] * theta + phase)).sum(0)
            region = np.sqrt((u / a) ** 2 + (v * ratio / a) ** 2) <= 1.0 + edge
        mask[y0:y1, x0:x1] |= region
    return mask


class DefectDataset(torch.utils.data.Dataset):
    """One class ("scale") of ``images`` synthetic test images; see the module docstring."""

    has_masks = True

    def __init__(self, images: int, size: int, anomalous: float, seed: int = 0):
        self.size, self.seed, self.anomalous = size, seed, anomalous
        self.categories = ["scale"]
        self.samples = [_Sample("scale") for _ in range(images)]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        rng = np.random.default_rng([self.seed, index])
        label = int(rng.random() < self.anomalous)
        mask = defect_mask(rng, self.size) if label else np.zeros((self.size, self.size), dtype=bool)
        if label and not mask.any():
            mask[self.size // 2, self.size // 2] = True
        # the detector reads channel 0: smooth structure (8 px cells) plus pixel noise, defects raised
        image = np.zeros((3, self.size, self.size), dtype=np.float32)
        low = rng.standard_normal((self.size // 8 + 1, self.size // 8 + 1), dtype=np.float32)
        image[0] = np.repeat(np.repeat(low, 8, 0), 8, 1)[: self.size, : self.size]
        image[0] += rng.standard_normal((self.size, self.size), dtype=np.float32)
        image[0][mask] += float(rng.uniform(0.5, 4.0))  # how strongly the model sees this defect
        return {"image": torch.from_numpy(image), "mask": torch.from_numpy(mask[None].astype(np.float32)),
                "label": label, "category": "scale"}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=7600)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--anomalous", type=float, default=1 / 3, help="share of anomalous images")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cfg = OmegaConf.create({"metrics": "all", "pool_size": 16, "score": "max", "save_maps": 0,
                            "batch_size": args.batch_size, "normal_pixel_budget": None,
                            "precision": "fp32"})
    dataset = DefectDataset(args.images, args.size, args.anomalous)
    memory = PeakMemory(device)
    others = OtherCpuUse()
    memory.reset()
    t0 = time.perf_counter()
    metrics, timing = evaluate(BlurDetector().to(device), dataset, cfg, device=device)
    seconds = time.perf_counter() - t0
    peak = memory.phase()
    pixels = args.images * args.size * args.size
    out = {"images": args.images, "size": args.size, "pixels": pixels, "device": device_name(device),
           "eval_s": round(seconds, 1), "metrics_s": timing.get("eval_metrics_s"), "memory": memory.kind,
           **peak, "resident_before_mb": round(memory.resident_at_reset, 1), "other_cpu_share": others.share(),
           "metrics": metrics["mean"]}
    print(f"1 class x {args.images} images at {args.size} px ({pixels / 1e6:.0f} M pixels), eval.metrics=all, exact, "
          f"{out['device']}: evaluation {seconds:.1f} s (metrics {out['metrics_s']} s), "
          f"peak {memory.kind} {peak['peak_mb']:.0f} MiB, {peak['extra_mb']:.0f} MiB over the "
          f"{memory.resident_at_reset:.0f} MiB resident before; other processes used {out['other_cpu_share']} "
          "of the CPUs")
    print({k: round(v, 4) if v is not None else None for k, v in metrics["mean"].items()})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return out


if __name__ == "__main__":
    main()
