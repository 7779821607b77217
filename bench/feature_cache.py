"""Frozen-feature cache: a frozen backbone's features of an image never change, so compute them once.

Features are stored under ``cache_root/<key>/<split>.pt`` where the key hashes everything that
determines them (dataset, its files, categories, backbone, weights, stages, image size, dtype).
Files are written to a temp name and renamed, so a concurrent job never reads half a cache;
two jobs that race both compute the same tensor and the last rename wins.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


def cache_key(parts: dict) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def dataset_fingerprint(dataset) -> str:
    """Digest of the dataset's file list (paths, sizes, mtimes) so changed files invalidate the cache."""
    h = hashlib.sha256()
    for sample in getattr(dataset, "samples", []):
        path = Path(getattr(sample, "path", sample))
        try:
            st = path.stat()
            h.update(f"{path}|{st.st_size}|{int(st.st_mtime)}\n".encode())
        except OSError:
            h.update(f"{path}|missing\n".encode())
    h.update(str(len(dataset)).encode())
    return h.hexdigest()[:20]


@torch.no_grad()
def compute_features(detector, dataset, batch_size: int, device, desc: str, num_workers: int = 0) -> torch.Tensor:
    """(N, C, h, w) float32 features of every image of ``dataset`` on the CPU, in dataset order."""
    detector.eval()
    # a private generator: iterating a DataLoader draws a seed from its generator, and drawing it from
    # the global RNG would shift dropout/jitter so a cache miss would train differently from a hit
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        generator=torch.Generator())
    chunks = []
    for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True):
        chunks.append(detector.target(batch["image"].to(device)).float().cpu())
    return torch.cat(chunks)


def _save_atomic(tensor: torch.Tensor, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(tensor, tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; other jobs of a shared cache must read it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_text_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_features(detector, dataset, *, split: str, key_parts: dict, cache_root: str | None, dtype: str,
                    batch_size: int, device, num_workers: int = 0) -> tuple[torch.Tensor, bool]:
    """Features of ``dataset`` from the disk cache, computing and storing them on a miss.

    Returns (features in ``dtype`` on the CPU, hit). ``cache_root=None`` keeps them in memory only.
    """
    store = DTYPES[dtype]
    path = None
    if cache_root:
        key = cache_key({**key_parts, "split": split, "dtype": dtype, "files": dataset_fingerprint(dataset)})
        path = Path(cache_root) / key / f"{split}.pt"
        if path.is_file():
            try:
                feats = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                if isinstance(feats, torch.Tensor) and feats.dtype == store and feats.shape[0] == len(dataset):
                    return feats, True
            except Exception:  # a corrupt cache file is recomputed, never trusted
                pass
    feats = compute_features(detector, dataset, batch_size, device, f"features {split}", num_workers).to(store)
    if path is not None:
        _save_atomic(feats, path)
        _write_text_atomic(path.parent / "key.json", json.dumps({**key_parts, "split": split}, indent=1, default=str))
    return feats, False
