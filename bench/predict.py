"""``task=predict``: score a folder of unlabelled images with a trained checkpoint.

``python -m bench task=predict ckpt=<last.ckpt or its run dir> predict.input=<folder>`` reads every image
under the folder (any depth; PNG, JPEG, TIFF, BMP), resized as the checkpoint's data was, and writes in
the run dir ``predictions.csv`` (``path`` relative to the folder, ``score``, and ``label`` 1 anomalous /
0 normal where ``predict.threshold`` is given: score >= threshold) and, unless ``predict.maps=false``,
``maps/<path>.png``: the anomaly map laid over the image, on one colour scale for the whole folder.
The image score is the one the checkpoint's evaluation uses (the method's own, else ``eval.score`` of
the ``eval.pool_size`` pooled map).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from bench.errors import BenchError
from bench.heatmap import map_scale, save_overlay
from data.transforms import denormalize, load_image
from models.losses import image_scores

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
PREDICTIONS = "predictions.csv"
MAPS = "maps"


def find_images(folder: str | Path) -> list[Path]:
    """Every image file under ``folder`` (any depth, hidden files and folders left out), sorted."""
    if folder in (None, ""):
        raise BenchError("task=predict needs predict.input=FOLDER (a folder of images to score)")
    root = Path(str(folder)).expanduser()
    if not root.is_dir():
        raise BenchError(f"predict.input={folder}: no such folder")
    found = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    if not found:
        raise BenchError(f"predict.input={folder}: no image (PNG, JPEG, TIFF, BMP) under it")
    return found


def check_threshold(value) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BenchError(f"predict.threshold={value!r}: give a finite number (the image score at which an image "
                         "is labelled anomalous) or null for no label")
    return float(value)


@torch.no_grad()
def predict_folder(detector, cfg, run_dir: str | Path, device: torch.device) -> dict:
    """Score ``cfg.predict.input`` with ``detector`` (loaded from the checkpoint); return the record's outputs."""
    threshold = check_threshold(cfg.predict.threshold)
    root = Path(str(cfg.predict.input)).expanduser()
    paths = find_images(root)
    size, batch = int(cfg.data.image_size), int(cfg.eval.batch_size)
    detector.eval()
    rows, pictures = [], []
    for start in tqdm(range(0, len(paths), batch), desc="predict", dynamic_ncols=True):
        chunk = paths[start : start + batch]
        images = torch.stack([load_image(p, size) for p in chunk]).to(device)
        target = detector.target(images)
        rec = detector.reconstruct(target)
        amap = detector.anomaly_map(target, rec, images.shape[-2:]).float()
        own = detector.image_scores(target, rec, amap)
        scores = image_scores(amap, cfg.eval.score, int(cfg.eval.pool_size)) if own is None else own
        for path, image, one, score in zip(chunk, images, amap[:, 0].cpu().numpy(), scores.float().cpu().tolist(),
                                           strict=True):
            rel = path.relative_to(root).as_posix()
            rows.append({"path": rel, "score": score,
                         **({} if threshold is None else {"label": int(score >= threshold)})})
            if cfg.predict.maps:
                pictures.append((rel, denormalize(image), one.astype(np.float16)))
    run_dir = Path(run_dir)
    out = run_dir / PREDICTIONS
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "score": f"{r['score']:.6g}"} for r in rows)
    outputs = {"predictions": str(out), "images": len(rows), "threshold": threshold}
    if pictures:
        low, high = map_scale([p[2].astype(np.float32) for p in pictures])
        for rel, image, amap in pictures:
            save_overlay(run_dir / MAPS / f"{rel}.png", image, amap.astype(np.float32), low, high)
        outputs.update(maps=str(run_dir / MAPS), map_scale=[low, high])
    return outputs
