"""Evaluation from the last epoch, streamed per class (docs/metrics-and-protocols.md).

For each class the anomaly maps (float32, on the evaluation device, preallocated for the class) and
bit-packed masks are gathered with the image scores and labels, reduced to the requested metrics
exactly (``metrics.class_maps``), and dropped before the next class is read, so memory is bounded by
the largest class. The reported value of a metric is the unweighted mean over the classes where it
is defined; the record names the others and why (``record_values``).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from bench import precision
from bench.heatmap import map_scale, save_overlay
from metrics import class_metrics, image_undefined_reason, mean_metrics, metric, resolve_metrics, without_pixel_metrics
from metrics.class_maps import ClassMaps
from metrics.conventions import conventions_from_config
from metrics.subset_metrics import subset_metrics
from models.losses import image_scores


def sample_categories(dataset) -> list[str]:
    """The category of every item, without loading images (``data.protocol.AnomalyDataset.samples``)."""
    return [s.category for s in dataset.samples]


def _save_examples(out_dir: Path, category: str, examples: dict[int, tuple], k: int) -> None:
    """The first ``k`` examples, anomalous images first (each: image, mask, map, label), as ``.npz`` arrays
    and as ``.png`` pictures of the map over the image (``bench.heatmap``)."""
    from data.transforms import denormalize

    order = sorted(examples, key=lambda i: (examples[i][3] != 1, i))[:k]
    folder = out_dir / "maps" / category
    folder.mkdir(parents=True, exist_ok=True)
    low, high = map_scale([examples[i][2] for i in order])  # one colour scale for the class's pictures
    for i in order:
        image, mask, amap, _ = examples[i]
        rgb = denormalize(image)
        np.savez_compressed(folder / f"{i:03d}.npz", image=rgb.astype(np.float32),
                            mask=mask.astype(np.uint8), map=amap.astype(np.float32))
        save_overlay(folder / f"{i:03d}.png", rgb, amap, low, high)


def _keep_example(examples: dict[int, tuple], k: int, i: int, label: int, item) -> None:
    """Keep at most ``k`` anomalous and ``k`` normal examples (the first ones)."""
    if sum(1 for e in examples.values() if (e[3] == 1) == (label == 1)) < k:
        examples[i] = (*item, label)


_SUBSET_REASON = "a single image label, or no anomalous pixel, among the images or samples it covers"


def record_values(per_class: dict[str, dict[str, float]], reasons: dict[str, dict[str, str]]) -> dict:
    """The record's metrics: nan becomes None (JSON null, never NaN), each with its reason.

    Returns ``{"mean", "per_class", "undefined"}``: ``undefined[class][metric]`` says why a value is
    null; the mean of a metric is over the classes where it is defined (None where it is nowhere).
    """
    clean: dict[str, dict[str, float | None]] = {}
    undefined: dict[str, dict[str, str]] = {}
    for category, values in per_class.items():
        clean[category] = {}
        for name, value in values.items():
            if value is None or (isinstance(value, float) and math.isnan(value)):
                clean[category][name] = None
                why = reasons.get(category, {}).get(name) or _SUBSET_REASON
                undefined.setdefault(category, {})[name] = why
            else:
                clean[category][name] = value
    mean = {name: (None if math.isnan(v) else v) for name, v in mean_metrics(clean).items()}
    return {"mean": mean, "per_class": clean, "undefined": undefined}


def evaluate(detector, test_set, eval_cfg, *, device: torch.device, **kwargs) -> tuple[dict, dict]:
    """``_evaluate`` under ``eval.precision`` (the training precision unless set; bench/precision.py)."""
    mode = precision.check(str(eval_cfg.precision))
    precision.configure(mode, device)
    with precision.autocast(mode, device):
        return _evaluate(detector, test_set, eval_cfg, device=device, **kwargs)


@torch.no_grad()
def _evaluate(detector, test_set, eval_cfg, *, device: torch.device, features: torch.Tensor | None = None,
              run_dir: Path | None = None, logger=None) -> tuple[dict, dict]:
    """Return ({"mean": {...}, "per_class": {...}, "undefined": {...}}, timing) (see ``record_values``)."""
    names = resolve_metrics(list(eval_cfg.metrics) if not isinstance(eval_cfg.metrics, str) else eval_cfg.metrics)
    skipped: tuple[str, ...] = ()
    if not test_set.has_masks:  # data=folder without masks: no pixel metrics at all
        names, skipped = without_pixel_metrics(names)
    detector.eval()
    categories = sample_categories(test_set)
    image_names = [n for n in names if metric(n).level == "image"]
    pixel_names = [n for n in names if metric(n).level == "pixel"]
    per_class: dict[str, dict[str, float]] = {}
    reasons: dict[str, dict[str, str]] = {}
    t0 = time.perf_counter()
    metrics_s = 0.0  # of which reducing the gathered classes to their metrics
    k_maps = int(eval_cfg.save_maps or 0)
    # eval.conventions: the published conventions' metrics from the same maps (metrics/conventions/)
    conventions = conventions_from_config(eval_cfg) if test_set.has_masks else None
    conventions_s = 0.0
    bar = tqdm(total=len(test_set), desc="eval", dynamic_ncols=True)
    for category in sorted(set(categories)):
        idx = [i for i, c in enumerate(categories) if c == category]
        loader = DataLoader(Subset(test_set, idx), batch_size=int(eval_cfg.batch_size), shuffle=False)
        scores, labels, examples = [], [], {}
        buffer: ClassMaps | None = None
        offset = 0
        for batch in loader:
            images = batch["image"].to(device)
            n = images.shape[0]
            if features is not None:
                target = features[idx[offset : offset + n]].to(device).float()
            else:
                target = detector.target(images)
            rec = detector.reconstruct(target)
            amap = detector.anomaly_map(target, rec, images.shape[-2:]).float()
            # PaDiM / PatchCore score images their own way (None: the suite's pooled max)
            own = detector.image_scores(target, rec, amap)
            own = image_scores(amap, eval_cfg.score, int(eval_cfg.pool_size)) if own is None else own
            scores.append(own.float().cpu().numpy())
            mask = batch["mask"][:, 0] > 0.5
            label = np.asarray(batch["label"])
            labels.append(label)
            # one class's maps, preallocated: float32 on the device, masks bit-packed
            if pixel_names or conventions is not None:
                if buffer is None:
                    buffer = ClassMaps(len(idx), *amap.shape[-2:], device=amap.device)
                buffer.add(amap[:, 0], mask)
            for j in range(n) if k_maps else ():
                _keep_example(examples, k_maps, offset + j, int(label[j]),
                              (batch["image"][j], mask[j].numpy(), amap[j, 0].cpu().numpy()))
            offset += n
            bar.update(n)
        labels_np, scores_np = np.concatenate(labels).astype(int), np.concatenate(scores)
        t_class = time.perf_counter()
        # metrics over subsets of the images (MVTec LOCO's) need their maps: copied out before the
        # class's own pixel metrics reorder the buffer
        subset_maps = buffer.arrays() if buffer is not None and getattr(test_set, "subsets", None) is not None else None
        if conventions is not None:
            t_conv = time.perf_counter()
            conventions.add(category, labels_np, scores_np, *(subset_maps or buffer.arrays()))
            conventions_s += time.perf_counter() - t_conv
        extra = subset_metrics(test_set, idx, names, labels_np, scores_np, *(subset_maps or (None, None)),
                               normal_pixel_budget=eval_cfg.normal_pixel_budget)
        del subset_maps
        values = class_metrics(image_names, labels_np, scores_np, None, None)
        if buffer is not None:
            values.update(buffer.pixel_metrics(pixel_names, normal_pixel_budget=eval_cfg.normal_pixel_budget,
                                               seed=0))
        per_class[category] = {**{name: values[name] for name in names}, **extra}
        metrics_s += time.perf_counter() - t_class
        reasons[category] = {name: (image_undefined_reason(labels_np) if metric(name).level == "image"
                                    else buffer.undefined_reason(name, labels_np) if buffer is not None else "")
                             for name in names}
        if k_maps and run_dir is not None:
            _save_examples(Path(run_dir), category, examples, k_maps)
        if logger is not None and k_maps:
            logger.log_maps(category, Path(run_dir) / "maps" / category if run_dir else None)
        del buffer, examples
    bar.close()
    elapsed = time.perf_counter() - t0
    result = record_values(per_class, reasons)
    if conventions is not None:
        result["conventions"] = conventions.result()
    if skipped:
        result["note"] = f"{', '.join(skipped)} skipped: the test set has no ground-truth masks"
    timing = {"eval_s": round(elapsed, 3), "eval_metrics_s": round(metrics_s, 3),
              "infer_images_per_s": round(len(test_set) / elapsed, 2) if elapsed else None}
    if conventions is not None:
        timing["conventions_s"] = round(conventions_s, 3)  # part of eval_s and eval_metrics_s
    return result, timing
