"""Performance benchmark (not a test): ``python -m bench.tools.perf [--official PATH] [options] [overrides]``.

For the configured detector (Hydra overrides as for ``python -m bench``, e.g. ``backbone=efficientnet_b4
backbone.weights=none``) it measures, on synthetic random images (no dataset is read or written):

* train images/s with the frozen-feature cache (features computed once and kept on the device in
  ``cache.dtype``; a step gathers its batch and casts it to float32) and without it (a backbone forward
  every step);
* inference images/s of backbone + reconstruction + anomaly map, and of reconstruction + map on cached
  features; latency at batch 1;
* inference and latency in the row's precision (``eval.precision``, the training precision unless set);
* per phase (``bench.tools.measure``): synchronised and enqueue time per step, and the peak memory, absolute and
  as the extra over what was resident (CPU: resident set; CUDA: allocated), ours and the official apart;
  learnable params, GFLOPs;
* with ``--official PATH`` (a checkout of zhiyuanyou/UniAD), the train step of the official reconstruction
  module on the same cached features, in the same process, interleaved with ours so both see the same
  machine load; skipped with a message when PATH holds no ``models/reconstructions/uniad.py``.

The train step is ``bench.fit.make_train_step``, the function the training loop runs: the forward under
``trainer.precision`` (fp32 | tf32 | bf16 autocast), the loss in fp32, AdamW, gradient clipping, the loss
accumulated on the device (no host-device sync per step); ``trainer.compile=true`` compiles the
reconstruction model. The official model (``bench.tools.official``, needs ``pip install -e .[perf]`` for einops)
runs through the same step, as released: fp32, not compiled, torch's default AdamW (not fused), neighbor
mask rebuilt every forward.
Results are printed as a Markdown table and written to ``<out>/perf.md`` and ``<out>/perf.json``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

import bench  # noqa: F401  (registers the config resolvers)
from bench import precision
from bench.build import build_detector, feature_size, learnable_parameters
from bench.complexity import complexity, count_parameters
from bench.feature_cache import DTYPES, FEATURE_PRECISION
from bench.fit import make_train_step
from bench.tools.measure import (
    OtherCpuUse,
    PeakMemory,
    device_name,
    median_latency_ms,
    sync,
    time_interleaved,
    write_results,
)
from bench.tools.official import OFFICIAL_FILE, OfficialDetector, build_official, load_official, official_file
from models.attention import sdpa_kernels

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"


# --------------------------------------------------------------------------------------------- config


def compose_config(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def pick_device(name: str | None) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


# ------------------------------------------------------------------------------------------ benchmark


def timed_step(detector, trainer_cfg, device, batches):
    """``bench.fit.make_train_step`` of ``detector`` as a phase ``fn(i)`` on ``batches(i) -> (kind, x)``.

    The losses are summed on the device and read once at the end, as fit reads once per epoch.
    """
    params = learnable_parameters(detector)
    optimizer = instantiate(trainer_cfg.optimizer)(params)
    step = make_train_step(detector, optimizer, params, trainer_cfg, device)
    total = torch.zeros((), device=device)

    def fn(i: int) -> None:
        detector.train()
        total.add_(step(*batches(i)))

    return fn


def benchmark(cfg: DictConfig, *, batch_size: int, steps: int, warmup: int, rounds: int, infer_batches: int,
              latency_runs: int, official: str | None, device: torch.device, log=print) -> dict:
    torch.manual_seed(int(cfg.seed))
    other_cpu = OtherCpuUse()
    size = int(cfg.data.image_size)
    memory = PeakMemory(device)
    resident_before = memory.resident_mb()
    log(f"building {cfg.model.name} on {cfg.backbone.name} at {size} px, {device}")
    detector = build_detector(cfg).to(device)
    stats = complexity(detector, size)
    cache_dtype = str(cfg.cache.get("dtype", "float16"))
    cacheable = bool(getattr(detector, "frozen_target", False))

    generator = torch.Generator().manual_seed(0)
    pool = torch.randn(2 * batch_size, 3, size, size, generator=generator).to(device)
    # step i trains on a random batch of the pool, as a shuffled epoch would
    picks = [torch.randperm(pool.shape[0], generator=generator)[:batch_size].to(device) for _ in range(8)]

    def images(i: int):
        return "images", pool[picks[i % len(picks)]]

    phases, notes = {}, []
    features = None
    with torch.no_grad():
        detector.eval()
        if cacheable:  # what the disk cache holds, in cache.dtype, precomputed on the device in IEEE fp32
            precision.configure(FEATURE_PRECISION, device)
            features = detector.target(pool).to(DTYPES[cache_dtype])
    if features is not None:
        def cached(i: int):
            return "features", features[picks[i % len(picks)]].float()

        phases["train_cached"] = timed_step(detector, cfg.trainer, device, cached)
    else:
        notes.append("train/infer with cache: not measured, the target can change (trainable backbone "
                     "or image model), so the cache is bypassed")
    phases["train_uncached"] = timed_step(detector, cfg.trainer, device, images)

    official_status, official_params = "not requested (--official PATH)", None
    if official:
        if features is None:
            official_status = "skipped: the official model reconstructs frozen features, this config has none"
        elif official_file(official) is None:
            official_status = f"skipped: no {OFFICIAL_FILE} under {official} (give a zhiyuanyou/UniAD checkout)"
        else:
            try:
                model = build_official(load_official(official), cfg, features.shape[1]).to(device)
                official_params = count_parameters(model)
                # the official recipe as released: fp32, not compiled, torch's default (unfused) AdamW,
                # through the same train step
                as_released = OmegaConf.merge(cfg.trainer, {"precision": "fp32", "compile": False,
                                                            "optimizer": {"fused": False}})
                phases["official_train"] = timed_step(OfficialDetector(model, device), as_released, device, cached)
                official_status = "measured (fp32, as released)"
            except Exception as exc:  # an incompatible checkout: say why, measure the rest
                official_status = f"skipped: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    if official:
        log(f"official UniAD: {official_status}")

    log(f"training: {', '.join(phases)}; {warmup} warm-up + {steps} timed steps of batch {batch_size} each")
    train = time_interleaved(phases, steps, warmup, rounds, device, memory)
    rate = {name: steps * batch_size / t["seconds"] for name, t in train.items()}
    timings = {name: {k: t[k] for k in ("step_ms", "enqueue_ms")} for name, t in train.items()}
    peaks = {name: {k: t[k] for k in ("peak_mb", "extra_mb")} for name, t in train.items()}

    # inference in the row's precision (eval.precision, the training precision unless set), as evaluation runs
    eval_mode = precision.check(str(cfg.eval.precision))
    detector.eval()
    infer_phases = {}

    @torch.no_grad()
    def infer_images(i: int) -> None:
        precision.configure(eval_mode, device)
        with precision.autocast(eval_mode, device):
            detector(images(i)[1])

    infer_phases["infer_uncached"] = infer_images

    @torch.no_grad()
    def infer_images_one(x: torch.Tensor) -> None:
        precision.configure(eval_mode, device)
        with precision.autocast(eval_mode, device):
            detector(x)
    if features is not None:
        @torch.no_grad()
        def infer_cached(i: int) -> None:
            t = cached(i)[1]
            precision.configure(eval_mode, device)
            with precision.autocast(eval_mode, device):
                detector.anomaly_map(t, detector.reconstruct(t), (size, size))

        infer_phases["infer_cached"] = infer_cached
    log(f"inference ({eval_mode}): {infer_batches} batches of {batch_size}")
    infer = time_interleaved(infer_phases, infer_batches, 1, 1, device, memory, probes=1)
    rate.update({name: infer_batches * batch_size / t["seconds"] for name, t in infer.items()})
    timings.update({name: {k: t[k] for k in ("step_ms", "enqueue_ms")} for name, t in infer.items()})
    peaks.update({name: {k: t[k] for k in ("peak_mb", "extra_mb")} for name, t in infer.items()})

    # the SDPA kernel each attention call runs, in one more train step and one more inference batch
    with sdpa_kernels() as kernels:
        phases["train_cached" if "train_cached" in phases else "train_uncached"](0)
        detector.eval()
        infer_images(0)
        sync(device)
    kernels = {k: sorted(v) for k, v in kernels.items()}

    one = pool[:1]
    memory.reset()
    latency_ms = median_latency_ms(lambda: infer_images_one(one), latency_runs, 2, device)
    peaks["latency_batch1"] = memory.phase()
    log(f"latency ({eval_mode}): median of {latency_runs} runs at batch 1")

    def r(x, nd=2):
        return None if x is None else round(float(x), nd)

    cached_rate, official_rate = rate.get("train_cached"), rate.get("official_train")
    return {
        "device": device.type,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "config": {
            "model": str(cfg.model.name), "backbone": str(cfg.backbone.name),
            "weights": str(cfg.backbone.get("weights")), "frozen": cacheable, "image_size": size,
            "feature_size": list(feature_size(cfg)),
            "channels": int(features.shape[1]) if features is not None else None,
            "arch": OmegaConf.to_container(cfg.arch, resolve=True), "batch_size": batch_size, "steps": steps,
            "warmup_steps": warmup, "rounds": rounds, "cache_dtype": cache_dtype,
            "compile": bool(cfg.trainer.compile), "precision": str(cfg.trainer.precision),
            "matmul_precision": precision.effective(str(cfg.trainer.precision), device),
            "eval_precision": precision.effective(str(cfg.eval.precision), device),
            "fp32_scores": cfg.model.get("fp32_scores"),
            "input": "synthetic random images",
        },
        "train_images_per_s_cached": r(cached_rate),
        "train_images_per_s_uncached": r(rate["train_uncached"]),
        "train_speedup_cache": r(cached_rate / rate["train_uncached"], 3) if cached_rate else None,
        "infer_images_per_s": r(rate["infer_uncached"]),
        "infer_images_per_s_cached": r(rate.get("infer_cached")),
        "latency_ms_batch1": r(latency_ms),
        "peak_memory_mb": r(max(v["peak_mb"] for k, v in peaks.items() if not k.startswith("official")), 1),
        "extra_memory_mb": r(max(v["extra_mb"] for k, v in peaks.items() if not k.startswith("official")), 1),
        "official_peak_memory_mb": peaks.get("official_train", {}).get("peak_mb"),
        "official_extra_memory_mb": peaks.get("official_train", {}).get("extra_mb"),
        "peak_memory_kind": memory.kind,
        "memory_by_phase": peaks,
        "step_ms_by_phase": timings,
        "resident_before_mb": r(resident_before, 1),
        "sdpa_kernels": kernels,
        "cudnn_attention": torch.backends.cuda.cudnn_sdp_enabled(),
        "learnable_params": stats["learnable_params"],
        "reconstruction_params": stats["reconstruction_params"],
        "gflops": stats["gflops"],
        "official_train_images_per_s": r(official_rate),
        "official_params": official_params,
        "official_params_match": (official_params == stats["reconstruction_params"]) if official_params else None,
        "speedup_vs_official_cached": r(cached_rate / official_rate, 3) if official_rate and cached_rate else None,
        "official_status": official_status,
        "other_processes_cpu_share": other_cpu.share(),
        "notes": notes,
    }


ROWS = [
    ("train images/s, feature cache", "train_images_per_s_cached"),
    ("train images/s, no cache (backbone every step)", "train_images_per_s_uncached"),
    ("train speed-up of the cache", "train_speedup_cache"),
    ("official UniAD train images/s (same cached features)", "official_train_images_per_s"),
    ("speed-up vs official (cached, same features)", "speedup_vs_official_cached"),
    ("inference images/s (backbone + reconstruction + map)", "infer_images_per_s"),
    ("inference images/s on cached features", "infer_images_per_s_cached"),
    ("latency at batch 1 (ms)", "latency_ms_batch1"),
    ("peak memory, ours (MB, absolute)", "peak_memory_mb"),
    ("peak memory, ours (MB, extra over resident)", "extra_memory_mb"),
    ("peak memory, official (MB, absolute)", "official_peak_memory_mb"),
    ("peak memory, official (MB, extra over resident)", "official_extra_memory_mb"),
    ("learnable params", "learnable_params"),
    ("GFLOPs (batch 1)", "gflops"),
]


def markdown(result: dict) -> str:
    c = result["config"]
    arch = c["arch"]
    lines = [
        "# UniAD Bench performance",
        "",
        f"`python -m bench.tools.perf` on {result['device_name']}, torch {result['torch']}. "
        f"Model {c['model']}, backbone {c['backbone']} (weights {c['weights']}, frozen {c['frozen']}), "
        f"{c['image_size']} px → {c['feature_size'][0]}x{c['feature_size'][1]}x{c['channels']} features, "
        f"hidden {arch.get('hidden_dim')}, {arch.get('num_encoder_layers')}+{arch.get('num_decoder_layers')} layers, "
        f"FFN {arch.get('dim_feedforward')}; batch {c['batch_size']}, {c['warmup_steps']} warm-up + {c['steps']} "
        f"timed steps per phase in {c['rounds']} interleaved rounds; cache dtype {c['cache_dtype']}, "
        f"precision {c['precision']} (matmuls in {c['matmul_precision']}"
        + (f", attention scores and token stream in fp32: {c['fp32_scores']}" if c["matmul_precision"] == "bf16"
           and c.get("fp32_scores") is not None else "") + f"), compile {c['compile']}; {c['input']}.",
        "",
        "| figure | value |",
        "| --- | --- |",
    ]
    for label, key in ROWS:
        value = result.get(key)
        if key == "learnable_params" and value is not None:
            value = f"{value:,}"
        elif (key.startswith("official") or key == "speedup_vs_official_cached") and value is None:
            value = result["official_status"].split(":")[0].split(" (")[0]  # "skipped" / "not requested"
        lines.append(f"| {label} | {'n/a' if value is None else value} |")
    lines += ["", f"Memory is {result['peak_memory_kind']}: absolute = the phase's peak, extra = that peak minus "
              f"what was resident when the phase began (both models, the feature pool and the optimizer states "
              f"of every train phase stay resident throughout; {result['resident_before_mb']} MB before the "
              "benchmark built anything). A step whose enqueue time (the host issuing one step on a drained "
              "device) is close to its synchronised time is bound by the host, not the device.", "",
              "| phase | synchronised ms/step | enqueue ms/step | peak MB | extra MB |",
              "| --- | --- | --- | --- | --- |"]
    for name, t in result["step_ms_by_phase"].items():
        m = result["memory_by_phase"].get(name, {})
        lines.append(f"| {name} | {t['step_ms']} | {t['enqueue_ms']} | {m.get('peak_mb')} | {m.get('extra_mb')} |")
    if "latency_batch1" in result["memory_by_phase"]:
        m = result["memory_by_phase"]["latency_batch1"]
        lines.append(f"| latency_batch1 | {result['latency_ms_batch1']} | | {m['peak_mb']} | {m['extra_mb']} |")
    k = result.get("sdpa_kernels", {})
    lines += ["", f"SDPA kernels (dtype of q): training {'; '.join(k.get('train', [])) or 'none'}; inference "
              f"{'; '.join(k.get('eval', [])) or 'none'}; cuDNN attention allowed: {result.get('cudnn_attention')}.",
              f"Official UniAD: {result['official_status']}."]
    share = result.get("other_processes_cpu_share")
    if share is not None and result["device"] == "cpu":
        lines.append(f"Other processes used {100 * share:.1f}% of the host's {os.cpu_count()} CPUs during the run"
                     + (" (absolute CPU figures are pessimistic; the ratios come from interleaved rounds)"
                        if share > 0.05 else "") + ".")
    lines += [f"Note: {n}." for n in result["notes"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.tools.perf", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("overrides", nargs="*",
                        help="Hydra overrides, e.g. backbone=efficientnet_b4 data.image_size=224")
    parser.add_argument("--official", metavar="PATH", help="checkout of zhiyuanyou/UniAD to time side by side")
    parser.add_argument("--steps", type=int, default=24, help="timed train steps per phase (default 24)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps per phase (default 1)")
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds the steps are split into (default 4)")
    parser.add_argument("--batch-size", type=int, default=8, help="train and inference batch size (default 8)")
    parser.add_argument("--infer-batches", type=int, default=2, help="timed inference batches per phase")
    parser.add_argument("--latency-runs", type=int, default=5, help="timed batch-1 forwards (median)")
    parser.add_argument("--device", default=None, help="cpu | cuda | auto (default: trainer.device)")
    parser.add_argument("--cudnn-attention", action="store_true",
                        help="let SDPA choose cuDNN's attention kernel (off by default: bench/precision.py)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results"), help="folder for perf.md and perf.json")
    args = parser.parse_intermixed_args(argv)  # overrides may come before or after the options
    if min(args.steps, args.batch_size, args.rounds, args.infer_batches, args.latency_runs) < 1 or args.warmup < 0:
        parser.error("--steps, --batch-size, --rounds, --infer-batches and --latency-runs must be >= 1")
    cfg = compose_config(args.overrides)
    device = pick_device(args.device or cfg.trainer.device)
    precision.allow_cudnn_attention(args.cudnn_attention)
    t0 = time.perf_counter()
    result = benchmark(cfg, batch_size=args.batch_size, steps=args.steps, warmup=args.warmup,
                       rounds=min(args.rounds, args.steps), infer_batches=args.infer_batches,
                       latency_runs=args.latency_runs, official=args.official, device=device)
    result["overrides"] = list(args.overrides)
    return write_results(result, markdown(result), args.out, "perf", t0)


if __name__ == "__main__":
    main()
