"""Frozen-feature cache: a frozen backbone's features of an image never change, so compute them once.

Features are stored under ``cache_root/<key>/<split>.pt`` where the key hashes everything that
determines them (dataset, the content of its files, categories, backbone, weights, stages, image size,
dtype; for a randomly initialised backbone also the seed, see ``bench.job._features``). Files are
written to a temp name and renamed, so a concurrent job never reads half a cache; two jobs that race
both compute the same tensor and the last rename wins.

Integrity: each ``<split>.pt`` has a sidecar ``<split>.pt.sha256``, written after it; a load recomputes
the file's sha256 and a mismatch (flipped bits, a file written by something else) is a miss with a
warning, never a hit. Image files are fingerprinted by content (``bench.file_index``: a sha256 per
file, remembered under its stat signature, so an unchanged file costs a ``stat``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from bench import precision
from bench.file_index import FileIndex, sample_paths, sha256_file

log = logging.getLogger(__name__)

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
FEATURE_PRECISION = "fp32"  # features are extracted in IEEE fp32 whatever the job's precision (README, Performance)


def cache_key(parts: dict) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def dataset_fingerprint(dataset, index_dir: str | os.PathLike | None = None) -> str:
    """Digest of the dataset's files by content (path and sha256 of each image, ``bench.file_index``),
    so a replaced image invalidates the cache even when its size and modification time are kept."""
    h = hashlib.sha256()
    index = FileIndex.for_dataset(index_dir, dataset)
    for path in sample_paths(dataset):
        try:
            h.update(f"{path}|{index.digest(path)}\n".encode())
        except OSError:
            h.update(f"{path}|missing\n".encode())
    index.save()
    h.update(str(len(dataset)).encode())
    return h.hexdigest()[:20]


@torch.no_grad()
def compute_features(detector, dataset, batch_size: int, device, desc: str, num_workers: int = 0) -> torch.Tensor:
    """(N, C, h, w) float32 features of every image of ``dataset`` on the CPU, in dataset order."""
    detector.eval()
    precision.configure(FEATURE_PRECISION, device)  # IEEE fp32 in every job (CUDA's default allows TF32 convs)
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
        os.chmod(tmp, 0o644)  # readable by the other jobs of a shared cache, as the .pt files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_features(detector, dataset, *, split: str, key_parts: dict, cache_root: str | None, dtype: str,
                    batch_size: int, device, num_workers: int = 0,
                    info: dict | None = None) -> tuple[torch.Tensor, bool]:
    """Features of ``dataset`` from the disk cache, computing and storing them on a miss.

    Returns (features in ``dtype`` on the CPU, hit). ``cache_root=None`` keeps them in memory only.
    ``info`` (a dict) receives ``key``: the cache key used (None without a disk cache), for the record.
    """
    store = DTYPES[dtype]
    path = None
    if info is None:
        info = {}
    info["key"] = None
    if cache_root:
        files = dataset_fingerprint(dataset, Path(cache_root) / "files")
        key = cache_key({**key_parts, "split": split, "dtype": dtype, "files": files})
        info["key"] = key
        path = Path(cache_root) / key / f"{split}.pt"
        if path.is_file():
            feats = _load_verified(path, store, len(dataset))
            if feats is not None:
                return feats, True
    feats = compute_features(detector, dataset, batch_size, device, f"features {split}", num_workers).to(store)
    if path is not None:
        try:
            _save_atomic(feats, path)
            _write_text_atomic(_sidecar(path), sha256_file(path) + "\n")
            key_json = {**key_parts, "split": split, "precision": FEATURE_PRECISION}
            _write_text_atomic(path.parent / "key.json", json.dumps(key_json, indent=1, default=str))
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
            _unwritable(Path(cache_root), path, exc)
    return feats, False


_WARNED: set[str] = set()  # cache folders already warned about in this process


def _unwritable(cache_root: Path, path: Path, exc: BaseException) -> None:
    """The cache is a speed-up: a cache that cannot be written (full disk, read-only) warns once per
    folder and the job goes on with the features in memory. A file left half-written is removed."""
    if path.is_file() and not _sidecar(path).is_file():
        with contextlib.suppress(OSError):
            path.unlink()  # stored without its checksum: every later load would recompute it anyway
    if str(cache_root) in _WARNED:
        return
    _WARNED.add(str(cache_root))
    text = str(exc).strip().splitlines()
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (text[0] if text else type(exc).__name__)
    log.warning(f"feature cache {cache_root} cannot be written ({reason}): the features stay in memory for this "
                "job; free space there, or set paths.cache_root to a writable folder (cache.disk=false: no disk)")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _load_verified(path: Path, store: torch.dtype, n: int) -> torch.Tensor | None:
    """The cached tensor when its sha256 matches the sidecar and its dtype/length fit; else None (a miss)."""
    try:
        expected = _sidecar(path).read_text().strip()
    except OSError:
        log.warning(f"feature cache {path} has no checksum ({_sidecar(path).name}): recomputing it")
        return None
    if sha256_file(path) != expected:
        log.warning(f"feature cache {path} does not match its checksum (corrupt or changed): recomputing it")
        return None
    try:
        feats = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # a corrupt cache file is recomputed, never trusted
        log.warning(f"feature cache {path} cannot be read ({type(exc).__name__}): recomputing it")
        return None
    if isinstance(feats, torch.Tensor) and feats.dtype == store and feats.shape[0] == n:
        return feats
    log.warning(f"feature cache {path} holds something else than {n} {store} feature maps: recomputing it")
    return None
