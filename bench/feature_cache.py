"""Frozen-feature cache: a frozen backbone's features of an image never change, so compute them once.

Features are stored under ``cache_root/<key>/<split>.pt`` where the key hashes everything that
determines them (dataset, the content of its files, categories, backbone, weights, stages, image size,
dtype; for a randomly initialised backbone also the seed: ``key_parts``). Files are
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
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from bench import precision
from bench.file_index import FileIndex, sha256_file
from data.protocol import AnomalyDataset

log = logging.getLogger(__name__)

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
FEATURE_PRECISION = "fp32"  # features are extracted in IEEE fp32 whatever the job's precision (docs/performance.md)


def cache_key(parts: dict) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def dataset_fingerprint(files: list[str], n_items: int, index: FileIndex) -> str:
    """Digest of the dataset's files by content (path and sha256 of each, ``bench.file_index``), so a
    replaced image invalidates the cache even when its size and modification time are kept."""
    h = hashlib.sha256()
    for path in files:
        try:
            h.update(f"{path}|{index.digest(path)}\n".encode())
        except OSError:
            h.update(f"{path}|missing\n".encode())
    index.save()
    h.update(str(n_items).encode())
    return h.hexdigest()[:20]


def key_parts(data: DictConfig, backbone: DictConfig, seed: int, index_dir: str | os.PathLike | None) -> dict:
    """What determines the features besides the files' content, from the nodes alone: the data node
    (whatever keys its reader takes; only its image score is left out) and the backbone node; for a
    randomly initialised backbone (``backbone.weights=none``) the seed, for a weights file its content."""
    parts = {"data": {k: v for k, v in OmegaConf.to_container(data, resolve=True).items() if k != "score"},
             "backbone": OmegaConf.to_container(backbone, resolve=True)}
    weights = str(backbone.weights)
    if weights == "none":  # random init: the seed draws the backbone
        parts["seed"] = int(seed)
    elif Path(weights).expanduser().is_file():  # a weights file: its content, not its name
        path = Path(weights).expanduser()
        parts["weights_sha256"] = FileIndex(index_dir, path.parent).digest(str(path))
    return parts


def dataset_features(detector, dataset: AnomalyDataset, split: str, *, data: DictConfig, backbone: DictConfig,
                     cache: DictConfig, seed: int, cache_root: str, batch_size: int, num_workers: int, device
                     ) -> tuple[torch.Tensor | None, bool | None, str | None]:
    """``(features, hit, key)`` of ``dataset`` under the cache settings ``cache``; ``(None, None, None)``
    when the features can change (a trainable backbone, an image model) or ``cache.features=false``.
    ``key`` is None when the features stay in memory (``cache.disk=false``)."""
    if not (cache.features and detector.frozen_target):
        return None, None, None
    index_dir = Path(str(cache_root)).expanduser() / "files"
    parts = key_parts(data, backbone, seed, index_dir)
    target_key = getattr(detector, "target_key", None)  # a target other than the backbone's map (Dinomaly's)
    if target_key is not None:
        parts["target"] = target_key
    index = FileIndex.for_dataset(index_dir if cache.disk else None, dataset)
    return cached_features(detector, dataset, split=split, key_parts=parts, files=dataset.files(), index=index,
                           cache_root=str(cache_root) if cache.disk else None, dtype=str(cache.dtype),
                           batch_size=batch_size, device=device, num_workers=num_workers)


def job_features(detector, dataset: AnomalyDataset, cfg: DictConfig, split: str, device
                 ) -> tuple[torch.Tensor | None, bool | None, str | None]:
    """``dataset_features`` under a job's config: its data, backbone, cache, seed and batch sizes."""
    return dataset_features(detector, dataset, split, data=cfg.data, backbone=cfg.backbone, cache=cfg.cache,
                            seed=int(cfg.seed), cache_root=str(cfg.paths.cache_root),
                            batch_size=int(cfg.eval.batch_size), num_workers=int(cfg.trainer.num_workers),
                            device=device)


def file_index_dir(paths: DictConfig) -> Path:
    """Where the dataset file index lives (``bench.file_index``): beside the feature cache."""
    return Path(str(paths.cache_root)).expanduser() / "files"


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


def cached_features(detector, dataset, *, split: str, key_parts: dict, files: list[str], index: FileIndex | None,
                    cache_root: str | None, dtype: str, batch_size: int, device, num_workers: int = 0
                    ) -> tuple[torch.Tensor, bool, str | None]:
    """``(features, hit, key)``: the features of ``dataset`` (in ``dtype``, on the CPU) from the disk cache
    under ``cache_root``, computed and stored on a miss; ``cache_root=None`` keeps them in memory (key None).
    The key hashes ``key_parts``, the split, the dtype and the content of ``files`` (digests from ``index``,
    by default the index of their common folder under ``cache_root/files``).
    """
    store = DTYPES[dtype]
    path, key = None, None
    if cache_root:
        if index is None:  # the index of the files' common folder, beside the cache
            folder = os.path.commonpath([os.path.abspath(f) for f in files]) if files else None
            index = FileIndex(Path(cache_root) / "files", folder)
        fingerprint = dataset_fingerprint(files, len(dataset), index)
        key = cache_key({**key_parts, "split": split, "dtype": dtype, "files": fingerprint})
        path = Path(cache_root) / key / f"{split}.pt"
        if path.is_file():
            feats = _load_verified(path, store, len(dataset))
            if feats is not None:
                return feats, True, key
    feats = compute_features(detector, dataset, batch_size, device, f"features {split}", num_workers).to(store)
    if path is not None:
        try:
            _save_atomic(feats, path)
            _write_text_atomic(_sidecar(path), sha256_file(path) + "\n")
            key_json = {**key_parts, "split": split, "precision": FEATURE_PRECISION}
            _write_text_atomic(path.parent / "key.json", json.dumps(key_json, indent=1, default=str))
        except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
            _unwritable(Path(cache_root), path, exc)
    return feats, False, key


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
