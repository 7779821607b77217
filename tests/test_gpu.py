"""CUDA checks (``gpu`` marker; run by the GPU check, ``bench.tools.gpu_check``, skipped without CUDA).

Autocast in each precision, ``trainer.compile``, the feature cache on the device without a host-device
sync inside an epoch, the SDPA kernels of training and evaluation, and the peak memory of a paper-size step.
``UNIAD_BENCH_GPU_TEST_DEVICE=cpu`` runs the device-independent ones on the CPU (the dry run). Figures go to
the JSON file ``UNIAD_BENCH_GPU_FIGURES`` names (read back by the check: printed lines are not parsed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from bench import fit as fit_module
from bench import precision
from bench.build import build_detector, learnable_parameters
from bench.fit import fit, make_train_step
from tests.conftest import compose_cfg

DEVICE = torch.device(os.environ.get("UNIAD_BENCH_GPU_TEST_DEVICE", "cuda"))
CUDA = DEVICE.type == "cuda"
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(CUDA and not torch.cuda.is_available(), reason="needs CUDA (make gpu-check)")]
SMOKE = ["profile=smoke", "logger=none", "cache.disk=false", "backbone.weights=none"]
needs_cuda = pytest.mark.skipif(not CUDA, reason="CUDA-only check")


def _save_figure(name: str, value) -> None:
    """Add ``name: value`` to the check's figures file (when the check runs the tests)."""
    path = os.environ.get("UNIAD_BENCH_GPU_FIGURES")
    if not path:
        return
    path = Path(path)
    figures = json.loads(path.read_text()) if path.is_file() else {}
    figures[name] = value
    path.write_text(json.dumps(figures, indent=1))


def _setup(overrides, batch=8):
    cfg = compose_cfg([*SMOKE, *overrides])
    torch.manual_seed(0)
    detector = build_detector(cfg).to(DEVICE)
    params = learnable_parameters(detector)
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    rec = detector.reconstruction
    x = torch.randn(batch, rec.channel_reduction.in_features, *rec.feature_size, device=DEVICE)
    return cfg, detector, params, optimizer, x


def _train_steps(overrides: list[str], steps: int = 8):
    """``steps`` of fit's own train step on the device: (losses, output dtypes by module type, parameters)."""
    cfg, detector, params, optimizer, x = _setup(overrides)
    step = make_train_step(detector, optimizer, params, cfg.trainer, DEVICE)
    dtypes: dict[str, set] = {}
    hook = torch.nn.modules.module.register_module_forward_hook(
        lambda m, args, out: dtypes.setdefault(type(m).__name__, set()).add(out.dtype)
        if isinstance(out, torch.Tensor) else None)
    try:
        detector.train()
        losses = [float(step("features", x)) for _ in range(steps)]
    finally:
        hook.remove()
    return losses, dtypes, params


@pytest.mark.parametrize("mode", precision.PRECISIONS)
def test_each_precision_trains_on_the_device(mode):
    losses, dtypes, params = _train_steps([f"trainer.precision={mode}"])
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert {torch.bfloat16 if mode == "bf16" else torch.float32} == dtypes["Linear"]
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in params)
    assert torch.backends.cuda.matmul.allow_tf32 == (mode == "tf32" and CUDA)
    if mode == "bf16":  # CUDA's autocast runs LayerNorm in fp32, the CPU's keeps its bf16 input (README, Performance)
        assert dtypes["LayerNorm"] == ({torch.float32} if CUDA else {torch.bfloat16})


def test_bf16_with_fp32_scores_trains_on_the_device():
    losses, dtypes, _ = _train_steps(["trainer.precision=bf16", "arch.fp32_scores=true"])
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]
    assert dtypes["LayerNorm"] == {torch.float32}  # the token stream
    assert dtypes["Linear"] == {torch.float32, torch.bfloat16}  # channel reduction fp32, the FFN's first linear bf16


@pytest.mark.parametrize("mode", ["fp32", "bf16"])
def test_compile_trains_on_the_device(mode):
    cfg, detector, params, optimizer, x = _setup(["trainer.compile=true", f"trainer.precision={mode}"])
    step = make_train_step(detector, optimizer, params, cfg.trainer, DEVICE)
    detector.train()
    losses = [float(step("features", x)) for _ in range(6)]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_cached_features_live_on_the_device_and_an_epoch_never_syncs(tmp_path, monkeypatch):
    cfg, detector, params, optimizer, x = _setup(["trainer.epochs=1", "trainer.batch_size=4"])
    features = torch.randn(12, *x.shape[1:]).half()  # the cache as loaded: CPU, float16
    seen = []
    real = fit_module.make_train_step

    def spy(*args, **kwargs):
        step = real(*args, **kwargs)

        def checked(kind, batch):
            seen.append(batch.device)
            if CUDA:  # any host-device sync inside the step raises
                torch.cuda.set_sync_debug_mode("error")
            try:
                return step(kind, batch)
            finally:
                if CUDA:
                    torch.cuda.set_sync_debug_mode("default")

        return checked

    monkeypatch.setattr(fit_module, "make_train_step", spy)
    fit(detector, None, cfg.trainer, run_dir=tmp_path, device=DEVICE, seed=0, features=features)
    assert len(seen) == 3 and all(d.type == DEVICE.type for d in seen)
    # the batches of an epoch are gathered on the device without a sync
    on_device = features.to(DEVICE)
    if CUDA:
        torch.cuda.set_sync_debug_mode("error")
    try:
        batches = list(fit_module._batches(on_device, None, 4, torch.Generator().manual_seed(0), DEVICE, 0))
    finally:
        if CUDA:
            torch.cuda.set_sync_debug_mode("default")
    assert len(batches) == 3 and all(b.device.type == DEVICE.type and b.dtype == torch.float32 for _, b in batches)


@needs_cuda
def test_peak_memory_of_a_paper_size_step():
    """Paper shapes (272x14x14, hidden 256, 4+4 layers, batch 64): bf16 needs less than fp32, both < 16 GB."""
    peaks = {}
    for mode in ("fp32", "bf16"):
        cfg = compose_cfg(["profile=paper", "logger=none", "backbone=efficientnet_b4", "backbone.weights=none",
                           f"trainer.precision={mode}"])
        torch.manual_seed(0)
        detector = build_detector(cfg).to(DEVICE)
        params = learnable_parameters(detector)
        step = make_train_step(detector, torch.optim.AdamW(params, lr=1e-4), params, cfg.trainer, DEVICE)
        x = torch.randn(64, 272, 14, 14, device=DEVICE)
        detector.train()
        step("features", x)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        step("features", x)
        torch.cuda.synchronize()
        peaks[mode] = torch.cuda.max_memory_allocated() / 2**30
        del detector, params, step
        torch.cuda.empty_cache()
    print(f"peak GiB per step at batch 64: {peaks}")
    _save_figure("peak_gib_per_step_batch64", {k: round(v, 3) for k, v in peaks.items()})
    assert peaks["bf16"] < peaks["fp32"] < 16


@pytest.mark.parametrize("overrides", [["trainer.precision=fp32"], ["trainer.precision=bf16"],
                                       ["trainer.precision=bf16", "arch.fp32_scores=true"]])
def test_training_and_evaluation_attention_kernels(overrides):
    """The kernel SDPA picks in a train step and in an evaluation forward; never cuDNN unless asked."""
    from models.attention import sdpa_kernels

    cfg, detector, params, optimizer, x = _setup(overrides)
    step = make_train_step(detector, optimizer, params, cfg.trainer, DEVICE)
    mode = str(cfg.trainer.precision)
    with sdpa_kernels() as seen:
        detector.train()
        step("features", x)
        detector.eval()
        precision.configure(mode, DEVICE)
        with torch.no_grad(), precision.autocast(mode, DEVICE):
            detector.reconstruct(x)
    _save_figure(f"sdpa_kernels {' '.join(overrides)}", {k: sorted(v) for k, v in seen.items()})
    assert seen["train"] and seen["eval"]
    assert not any("cudnn" in k for k in seen["train"] | seen["eval"])
    if CUDA:  # the neighbor mask rules flash out: both run the memory-efficient kernel
        kernels = [{k.split(",")[0] for k in seen[phase]} for phase in ("train", "eval")]
        assert kernels == [{"memory-efficient"}, {"memory-efficient"}]
    else:
        assert {k.split(",")[0] for k in seen["train"]} == {"math (CPU dropout path)"}
