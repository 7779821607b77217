"""Evaluation from the last epoch, streamed per class (DESIGN.md sections 4-5).

For each class the anomaly maps (at image size), masks, image scores and labels are gathered,
reduced to the requested metrics, and dropped before the next class is read, so memory is
bounded by one class. The reported value of a metric is the unweighted mean over classes.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from bench import precision
from bench.metrics import class_metrics, mean_metrics, resolve_metrics, without_pixel_metrics
from bench.subset_metrics import subset_metrics
from models.losses import image_scores


def sample_categories(dataset) -> list[str]:
    """The category of every item, without loading images."""
    samples = getattr(dataset, "samples", None)
    if samples is not None and len(samples) == len(dataset) and hasattr(samples[0], "category"):
        return [s.category for s in samples]
    return [dataset.categories[0]] * len(dataset)


def _save_examples(out_dir: Path, category: str, images, masks, maps, labels, k: int) -> None:
    from data.transforms import denormalize

    order = [i for i in range(len(labels)) if labels[i] == 1] + [i for i in range(len(labels)) if labels[i] == 0]
    folder = out_dir / "maps" / category
    folder.mkdir(parents=True, exist_ok=True)
    for i in order[:k]:
        np.savez_compressed(folder / f"{i:03d}.npz", image=denormalize(images[i]).astype(np.float32),
                            mask=masks[i].astype(np.uint8), map=maps[i].astype(np.float32))


def evaluate(detector, test_set, eval_cfg, *, device: torch.device, **kwargs) -> tuple[dict, dict]:
    """``_evaluate`` under ``eval.precision`` (the training precision unless set; bench/precision.py)."""
    mode = precision.check(str(eval_cfg.get("precision", "fp32")))
    precision.configure(mode, device)
    with precision.autocast(mode, device):
        return _evaluate(detector, test_set, eval_cfg, device=device, **kwargs)


@torch.no_grad()
def _evaluate(detector, test_set, eval_cfg, *, device: torch.device, features: torch.Tensor | None = None,
              run_dir: Path | None = None, logger=None) -> tuple[dict, dict]:
    """Return ({"mean": {...}, "per_class": {...}}, timing)."""
    names = resolve_metrics(list(eval_cfg.metrics) if not isinstance(eval_cfg.metrics, str) else eval_cfg.metrics)
    skipped: tuple[str, ...] = ()
    if not getattr(test_set, "has_masks", True):  # data=folder without masks: no pixel metrics at all
        names, skipped = without_pixel_metrics(names)
    detector.eval()
    categories = sample_categories(test_set)
    per_class: dict[str, dict[str, float]] = {}
    t0 = time.perf_counter()
    k_maps = int(eval_cfg.get("save_maps") or 0)
    bar = tqdm(total=len(test_set), desc="eval", dynamic_ncols=True)
    for category in sorted(set(categories)):
        idx = [i for i, c in enumerate(categories) if c == category]
        loader = DataLoader(Subset(test_set, idx), batch_size=int(eval_cfg.batch_size), shuffle=False)
        maps, masks, scores, labels, keep_images = [], [], [], [], []
        offset = 0
        for batch in loader:
            images = batch["image"].to(device)
            n = images.shape[0]
            if features is not None:
                target = features[idx[offset : offset + n]].to(device).float()
            else:
                target = detector.target(images)
            offset += n
            rec = detector.reconstruct(target)
            amap = detector.anomaly_map(target, rec, images.shape[-2:]).float()
            # PaDiM / PatchCore score images their own way (None: the suite's pooled max)
            own = detector.image_scores(target, rec, amap) if hasattr(detector, "image_scores") else None
            own = image_scores(amap, eval_cfg.score, int(eval_cfg.pool_size)) if own is None else own
            scores.append(own.float().cpu().numpy())
            maps.append(amap[:, 0].cpu().numpy())
            masks.append(batch["mask"][:, 0].numpy() > 0.5)
            labels.append(np.asarray(batch["label"]))
            if k_maps:
                keep_images.append(batch["image"])
            bar.update(n)
        maps_np, masks_np = np.concatenate(maps), np.concatenate(masks)
        labels_np, scores_np = np.concatenate(labels).astype(int), np.concatenate(scores)
        per_class[category] = class_metrics(names, labels_np, scores_np, masks_np, maps_np,
                                            normal_pixel_budget=eval_cfg.get("normal_pixel_budget"),
                                            seed=0)
        per_class[category].update(subset_metrics(test_set, idx, names, labels_np, scores_np, masks_np, maps_np,
                                                  normal_pixel_budget=eval_cfg.get("normal_pixel_budget")))
        if k_maps and run_dir is not None:
            _save_examples(Path(run_dir), category, torch.cat(keep_images), masks_np, maps_np, labels_np, k_maps)
        if logger is not None and k_maps:
            logger.log_maps(category, Path(run_dir) / "maps" / category if run_dir else None)
        del maps, masks, maps_np, masks_np
    bar.close()
    elapsed = time.perf_counter() - t0
    result = {"mean": mean_metrics(per_class), "per_class": per_class}
    if skipped:
        result["note"] = f"{', '.join(skipped)} skipped: the test set has no ground-truth masks"
    return result, {
        "eval_s": round(elapsed, 3), "infer_images_per_s": round(len(test_set) / elapsed, 2) if elapsed else None}
