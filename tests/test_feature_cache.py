"""The frozen-feature cache: keys, hits, corrupt and half-written files, concurrent writers, bypass, metrics.

Tolerance of the float16 cache, FP16_AUROC_TOL = 1e-3 absolute on every per-class and mean AUROC. Measured
on CPU, torch 2.14.1, profile=smoke (a 128 px, 60-image, 6-epoch variant in brackets):
* training that does not depend on the batch order (one batch per epoch, no jitter, no dropout): cached
  float32 features give the uncached metrics (|delta| <= 6e-8), cached float16 features differ by at most
  3.6e-5 [5.6e-5];
* the default recipe (shuffled batches, jitter, dropout): float16 versus float32 cache differ by at most
  2.0e-4 [3.6e-4] (mean AUROCs 4e-5 [9e-5]). Cached versus uncached runs of it differ by up to 1.4e-3
  [2.3e-3]: bench.fit draws the two paths' batch orders differently, so the images get other jitter and
  dropout draws; that is not a cache effect and is not compared here.
bfloat16 is much coarser (image AUROC moved by 0.03 on the 128 px variant): keep cache.dtype=float16.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import bench.feature_cache as fc
from bench.build import build_datasets, build_detector
from bench.feature_cache import job_features as _features
from bench.job import run
from tests.conftest import ROOT, compose_cfg

SMOKE = ["profile=smoke", "data.generator.n_train=4"]
FP16_AUROC_TOL = 1e-3  # absolute, on every per-class and mean AUROC (see the module docstring)
# one batch per epoch, no jitter, no dropout: the batch order cannot matter
ORDER_FREE = ["trainer.batch_size=64", "model.fj=false", "model.dropout=0"]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def shared_data(tmp_path_factory):
    """One generated synthetic dataset for the whole module (generation is the slow part)."""
    return tmp_path_factory.mktemp("datasets")


@pytest.fixture
def paths(tmp_paths, shared_data, monkeypatch):
    monkeypatch.setenv("UNIAD_BENCH_DATA", str(shared_data))
    return tmp_paths


@pytest.fixture
def computed(monkeypatch):
    """Counts the feature computations (cache misses) of bench.feature_cache."""
    calls = []
    real = fc.compute_features

    def counting(*args, **kwargs):
        calls.append(args[4] if len(args) > 4 else kwargs.get("desc"))
        return real(*args, **kwargs)

    monkeypatch.setattr(fc, "compute_features", counting)
    return calls


def cache_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.pt")) if root.exists() else []


def job_features(overrides: list[str], split: str = "train"):
    cfg = compose_cfg([*SMOKE, *overrides])
    train_set, test_set = build_datasets(cfg.data)
    detector = build_detector(cfg)
    return _features(detector, train_set if split == "train" else test_set, cfg, split, CPU)[:2]


def test_same_key_hits_without_recomputing(paths, computed):
    first, hit = job_features([])
    assert hit is False and len(computed) == 1
    files = cache_files(paths / "cache")
    assert len(files) == 1 and files[0].name == "train.pt"
    assert first.dtype == torch.float16 and first.shape[0] == len(build_datasets(compose_cfg(SMOKE).data)[0])

    # a new job (new detector) whose config differs only in what does not change the features
    again, hit = job_features(["trainer.lr=0.5", "seed=7", "arch.hidden_dim=16", "loss=cosine"])
    assert hit is True and len(computed) == 1
    assert torch.equal(again, first)
    assert cache_files(paths / "cache") == files


def test_every_key_part_invalidates(paths, computed):
    job_features([])
    variants = [["data.image_size=96"], ["backbone.weights=none"], ["data.outlayers=[1,2,3]"],
                ["data.categories=[brick]"], ["cache.dtype=float32"], ["backbone.feature_stride=8"]]
    for n, overrides in enumerate(variants, start=2):
        feats, hit = job_features(overrides)
        assert hit is False, overrides
        assert len(computed) == n, overrides
        assert len({f.parent for f in cache_files(paths / "cache")}) == n, overrides
        if overrides == ["data.outlayers=[1,2,3]"]:
            assert feats.shape[1] == 16 + 24 + 40  # stages 1-3 of lite0
    feats, hit = job_features(["data.categories=[brick]"])  # a variant is a hit the second time
    assert hit is True and len(computed) == 1 + len(variants)


def test_train_and_test_splits_have_their_own_files(paths, computed):
    train, _ = job_features([], "train")
    test, _ = job_features([], "test")
    train_set, test_set = build_datasets(compose_cfg(SMOKE).data)
    assert (train.shape[0], test.shape[0]) == (len(train_set), len(test_set)) and len(train_set) != len(test_set)
    assert {f.name for f in cache_files(paths / "cache")} == {"train.pt", "test.pt"}


# ---------------------------------------------------------------- file-level behaviour, on a fake backbone


class FakeDetector:
    frozen_target = True

    def eval(self):
        return self

    def target(self, images):
        return images[:, :, :2, :2].repeat(1, 2, 1, 1) * 3.0


def fake_dataset(n=6):
    g = torch.Generator().manual_seed(0)
    return [{"image": torch.randn(3, 4, 4, generator=g)} for _ in range(n)]


def cached(root, dataset, dtype="float16", files=()):
    return fc.cached_features(FakeDetector(), dataset, split="train", key_parts={"data": "fake"}, files=list(files),
                              index=None, cache_root=str(root), dtype=dtype, batch_size=4, device=CPU)[:2]


def test_corrupt_or_wrong_cache_files_are_recomputed(tmp_path, computed):
    data = fake_dataset()
    good, hit = cached(tmp_path, data)
    assert not hit and len(computed) == 1
    (path,) = cache_files(tmp_path)
    expected = torch.stack([FakeDetector().target(d["image"][None])[0] for d in data]).half()
    assert torch.equal(good, expected)

    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
    feats, hit = cached(tmp_path, data)
    assert not hit and len(computed) == 2 and torch.equal(feats, expected)
    assert torch.equal(torch.load(path, weights_only=True), expected)  # rewritten whole

    path.write_bytes(b"not a torch file")
    assert cached(tmp_path, data)[1] is False and len(computed) == 3
    torch.save(expected[:3], path)  # a tensor of the wrong length
    assert cached(tmp_path, data)[1] is False and len(computed) == 4
    torch.save({"features": expected}, path)  # not a tensor
    assert cached(tmp_path, data)[1] is False and len(computed) == 5
    assert cached(tmp_path, data)[1] is True and len(computed) == 5


def test_a_writer_killed_mid_write_leaves_no_cache_file(tmp_path, computed, monkeypatch):
    data = fake_dataset()
    real_save = torch.save

    def dies_half_way(tensor, file):
        real_save(tensor, file)
        Path(file).write_bytes(Path(file).read_bytes()[:100])
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(fc.torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        cached(tmp_path, data)
    monkeypatch.setattr(fc.torch, "save", real_save)
    assert cache_files(tmp_path) == [] and not [p for p in tmp_path.rglob("*") if p.is_file()]

    # a half-written temp file of a job killed with SIGKILL stays behind; readers never look at it
    key_dir = next(tmp_path.iterdir())
    (key_dir / ".train.pt.dead1234").write_bytes(b"\x00" * 50)
    feats, hit = cached(tmp_path, data)
    assert not hit and len(computed) == 2
    assert cached(tmp_path, data)[1] is True and torch.equal(cached(tmp_path, data)[0], feats)


def test_changed_image_files_invalidate(tmp_path, computed):
    files = [tmp_path / f"{i}.png" for i in range(6)]
    for f in files:
        f.write_bytes(b"x")

    data = fake_dataset()
    assert cached(tmp_path / "cache", data, files=map(str, files))[1] is False
    assert cached(tmp_path / "cache", data, files=map(str, files))[1] is True
    files[2].write_bytes(b"a new image")
    assert cached(tmp_path / "cache", data, files=map(str, files))[1] is False and len(computed) == 2


def test_cache_files_are_readable_by_other_jobs(tmp_path):
    cached(tmp_path, fake_dataset())
    (path,) = cache_files(tmp_path)
    assert path.stat().st_mode & 0o044 == 0o044
    assert path.with_name("train.pt.sha256").stat().st_mode & 0o044 == 0o044


WRITER = """
import sys, torch
from pathlib import Path
from bench.feature_cache import _save_atomic
value, rounds = float(sys.argv[2]), int(sys.argv[3])
tensor = torch.full((256, 64, 8, 8), value, dtype=torch.float16)  # 2 MiB: a write takes a while
for _ in range(rounds):
    _save_atomic(tensor, Path(sys.argv[1]))
"""


def test_concurrent_writers_never_expose_a_partial_file(tmp_path):
    path = tmp_path / "key" / "train.pt"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(v), "12"], cwd=ROOT)
               for v in (1, 2)]
    reads, deadline = 0, time.monotonic() + 120
    while any(w.poll() is None for w in writers) and time.monotonic() < deadline:
        if path.is_file():
            feats = torch.load(path, map_location="cpu", weights_only=True, mmap=True)  # never half a file
            assert feats.shape == (256, 64, 8, 8)
            first = float(feats.flatten()[0])
            assert first in (1.0, 2.0) and bool((feats == first).all())
            reads += 1
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    assert reads > 0
    assert [p.name for p in path.parent.iterdir()] == ["train.pt"]  # no temp file left behind


# ------------------------------------------------------------------------------------ whole jobs


def aurocs(record) -> dict[str, float]:
    metrics = record["metrics"]
    flat = {f"mean/{k}": v for k, v in metrics["mean"].items()}
    for category, values in metrics["per_class"].items():
        flat.update({f"{category}/{k}": v for k, v in values.items()})
    return flat


def max_delta(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(abs(a[k] - b[k]) for k in a)


def test_trainable_backbone_bypasses_the_cache(paths, computed):
    record = run(compose_cfg([*SMOKE, "backbone.frozen=false", "trainer.epochs=1"]), paths / "run")
    assert record["status"] == "completed"
    assert record["cache"] == {"used": False, "hit": None, "key": None, "test_key": None}
    assert computed == [] and cache_files(paths / "cache") == []
    assert job_features(["cache.features=false"]) == (None, None)
    feats, hit = job_features(["cache.disk=false"])  # in memory for this job only
    assert feats is not None and hit is False and cache_files(paths / "cache") == []


def test_cached_and_uncached_training_give_the_same_metrics(paths):
    uncached = run(compose_cfg([*SMOKE, *ORDER_FREE, "cache.features=false"]), paths / "uncached")
    fp16 = run(compose_cfg([*SMOKE, *ORDER_FREE]), paths / "fp16")
    fp32 = run(compose_cfg([*SMOKE, *ORDER_FREE, "cache.dtype=float32"]), paths / "fp32")
    assert (uncached["cache"]["used"], uncached["cache"]["hit"]) == (False, None)
    assert fp16["cache"]["used"] and fp32["cache"]["used"]
    assert max_delta(aurocs(fp32), aurocs(uncached)) <= 1e-5  # the cache itself changes nothing
    assert max_delta(aurocs(fp16), aurocs(uncached)) <= FP16_AUROC_TOL  # float16 storage, measured 3.6e-5


def test_a_cache_hit_trains_as_the_miss_that_wrote_it(paths):
    miss = run(compose_cfg(SMOKE), paths / "miss")
    hit = run(compose_cfg(SMOKE), paths / "hit")
    fp32 = run(compose_cfg([*SMOKE, "cache.dtype=float32"]), paths / "fp32")
    assert (miss["cache"]["hit"], hit["cache"]["hit"]) == (False, True)
    assert miss["cache"] == {**hit["cache"], "hit": False}  # the same keys
    # computing the features draws nothing from the global RNG, so jitter and dropout are the same
    assert aurocs(hit) == aurocs(miss)
    # float16 storage under the default recipe: pixel AUROCs within the tolerance; an image AUROC of a
    # smoke class (2 good x 5 defective test images) moves in steps of 1/(n_good*n_defective) = 0.1, and
    # fp16 rounding may swap one near-tied pair (seen once the synthetic data became v3), so at most one step
    pixel = [k for k in aurocs(miss) if k.endswith("pixel_auroc")]
    assert max(abs(aurocs(miss)[k] - aurocs(fp32)[k]) for k in pixel) <= FP16_AUROC_TOL
    _, test_set = build_datasets(compose_cfg(SMOKE).data)
    step = max(1 / (sum(s.label == 0 for s in test_set.samples if s.category == c)
                    * sum(s.label == 1 for s in test_set.samples if s.category == c)) for c in test_set.categories)
    assert max_delta(aurocs(miss), aurocs(fp32)) <= step + 1e-9


# ------------------------------------------------------------- what the key holds, and integrity


def test_a_random_backbone_is_keyed_on_the_seed(paths, computed):
    """backbone.weights=none: the seed draws the backbone, so seed 1 must not get seed 0's features."""
    from bench.job import seed_everything

    cfg0 = compose_cfg([*SMOKE, "backbone.weights=none", "seed=0"])
    cfg1 = compose_cfg([*SMOKE, "backbone.weights=none", "seed=1"])
    train_set, _ = build_datasets(cfg0.data)
    seed_everything(0)
    f0, hit0, _ = _features(build_detector(cfg0), train_set, cfg0, "train", CPU)
    seed_everything(1)
    f1, hit1, _ = _features(build_detector(cfg1), train_set, cfg1, "train", CPU)
    assert (hit0, hit1) == (False, False) and len(computed) == 2
    assert not torch.equal(f0, f1) and len({f.parent for f in cache_files(paths / "cache")}) == 2
    # a pretrained backbone's features do not depend on the seed: one key for every seed
    assert job_features(["seed=0"])[1] is False and job_features(["seed=1"])[1] is True


def test_the_record_names_the_cache_key(paths):
    record = run(compose_cfg([*SMOKE, "trainer.epochs=1"]), paths / "run")
    key, test_key = record["cache"]["key"], record["cache"]["test_key"]
    assert (paths / "cache" / key / "train.pt").is_file() and (paths / "cache" / test_key / "test.pt").is_file()


def _flip_a_bit_of_the_tensor(path: Path, tensor: torch.Tensor) -> None:
    blob = bytearray(path.read_bytes())
    at = bytes(blob).find(tensor.numpy().tobytes())
    assert at >= 0  # the tensor's bytes are stored uncompressed
    blob[at + 10] ^= 0x40
    path.write_bytes(bytes(blob))


def test_flipped_bits_in_a_cache_file_are_recomputed_with_a_warning(tmp_path, computed, caplog):
    data = fake_dataset()
    good, _ = cached(tmp_path, data)
    (path,) = cache_files(tmp_path)
    _flip_a_bit_of_the_tensor(path, good)
    assert not torch.equal(torch.load(path, weights_only=True), good)  # still loads, silently wrong
    with caplog.at_level("WARNING", logger="bench.feature_cache"):
        feats, hit = cached(tmp_path, data)
    assert hit is False and len(computed) == 2 and torch.equal(feats, good)
    assert "does not match its checksum" in caplog.text
    assert cached(tmp_path, data)[1] is True and len(computed) == 2  # rewritten, sidecar and all
    assert path.with_name("train.pt.sha256").read_text().strip() == fc.sha256_file(path)


def _image_files(root: Path) -> list[Path]:
    files = [root / f"{i}.png" for i in range(6)]
    root.mkdir()
    for i, f in enumerate(files):
        f.write_bytes(bytes([i]) * 100)
    return files


def test_an_image_replaced_with_size_and_mtime_kept_invalidates(tmp_path, computed):
    """``cp -p`` / ``rsync -t`` keep size and mtime: the content hash must still see the change."""
    files = _image_files(tmp_path / "data")
    data, paths = fake_dataset(), [str(f) for f in files]
    assert cached(tmp_path / "cache", data, files=paths)[1] is False
    assert cached(tmp_path / "cache", data, files=paths)[1] is True
    st = files[2].stat()
    files[2].write_bytes(b"X" * 100)  # same size ...
    os.utime(files[2], ns=(st.st_atime_ns, st.st_mtime_ns))  # ... and the old mtime, as cp -p leaves it
    assert files[2].stat().st_size == st.st_size and files[2].stat().st_mtime_ns == st.st_mtime_ns
    assert cached(tmp_path / "cache", data, files=paths)[1] is False and len(computed) == 2


def test_unchanged_images_are_not_read_again(tmp_path, monkeypatch):
    files = _image_files(tmp_path / "data")
    data, paths = fake_dataset(), [str(f) for f in files]
    hashed = []
    real = fc.sha256_file
    monkeypatch.setattr("bench.file_index.sha256_file", lambda p: hashed.append(p) or real(p))
    cached(tmp_path / "cache", data, files=paths)
    cached(tmp_path / "cache", data, files=paths)
    assert len(hashed) == 6  # hashed once; the second job only stats them
    files[4].write_bytes(b"Y" * 100)
    cached(tmp_path / "cache", data, files=paths)
    assert len(hashed) == 7  # only the changed file is read again


def test_a_full_cache_disk_warns_once_and_the_job_completes(paths, monkeypatch, caplog):
    import logging

    real_save = torch.save

    def full(obj, f, *args, **kwargs):  # the cache's disk is full, the run dir's is not
        if str(f).startswith(str(paths / "cache")):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4054")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(fc, "_WARNED", set())
    monkeypatch.setattr(torch, "save", full)
    with caplog.at_level(logging.WARNING):
        record = run(compose_cfg(SMOKE), paths / "run")
    assert record["status"] == "completed"
    warnings = [r.getMessage() for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(warnings) == 1 and str(paths / "cache") in warnings[0]  # train and test: one warning
    assert cache_files(paths / "cache") == []


def test_a_read_only_cache_keeps_the_features_in_memory(paths, computed, monkeypatch, caplog):
    import errno
    import logging

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    import bench.file_index

    monkeypatch.setattr(fc, "_WARNED", set())
    monkeypatch.setattr(bench.file_index, "_UNSAVED", set())
    monkeypatch.setattr(fc.tempfile, "mkstemp", read_only)  # the feature files and the file index
    with caplog.at_level(logging.WARNING):
        feats, hit = job_features([])
        again, _ = job_features([], split="test")
    assert isinstance(feats, torch.Tensor) and feats.shape[0] > 0 and hit is False and again.shape[0] > 0
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len([w for w in warned if "cannot be written" in w]) == 1
    assert len([w for w in warned if "file index" in w]) == 1  # once per folder, not once per save
    assert "Read-only file system" in warned[0] and str(paths / "cache") in warned[0]
