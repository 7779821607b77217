"""The prepared GPU check (DESIGN.md section 7): ``make gpu-check [OFFICIAL=path] [DEVICE=cuda]``.

One script, at most 8 minutes on one H100, that writes ``reports/perf_gpu.md`` and ``reports/perf_gpu.json``:

1. the ``gpu``-marked tests (tests/test_gpu.py: autocast in each precision, compile, the feature cache on the
   device without a sync inside an epoch, peak memory of a paper-size step; tests/test_class_maps_gpu.py: the
   exact pixel metrics of a class held on the device equal the host's);
2. ``bench.tools.perf`` at the paper shapes (EfficientNet-b4 with ``backbone.weights=none``, 224 px, 272x14x14
   features, batch 64) in fp32, in bf16 and in bf16 with ``arch.fp32_scores=true`` (attention scores and
   token stream in fp32), the official UniAD timed side by side in the same process when ``--official``
   names a checkout of zhiyuanyou/UniAD (it needs one: the official code is not shipped);
3. a short training of the paper architecture (``profile=paper`` sizes) on the offline synthetic data in
   the same three settings (same seed), with each one's image/pixel AUROC difference to fp32;
4. the projected wall time of the paper recipe (1000 epochs on MVTec's 3,629 training images) from the
   steady-state cached train throughput of step 2.

``--device cpu`` is the tiny dry run (CI): smoke sizes, one step, written under outputs/gpu-check-dry-run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.errors import BenchError
from bench.tools import perf
from bench.tools.measure import device_name

ROOT = Path(__file__).resolve().parents[2]
MVTEC_TRAIN_IMAGES = 3629
PAPER_EPOCHS = 1000
PAPER_PERF = ["profile=paper", "backbone=efficientnet_b4", "backbone.weights=none", "data.image_size=224"]
# the short training: Table S1's sizes (profile=paper), the offline synthetic data and the offline backbone
PAPER_TRAIN = ["profile=paper", "logger=none", "trainer.epochs=60", "trainer.lr=1e-3", "trainer.lr_step=50",
               "trainer.ckpt_every=0"]
DRY = {
    "perf": ["profile=smoke"], "perf_args": ["--batch-size", "2", "--steps", "1", "--warmup", "0", "--rounds", "1",
                                             "--infer-batches", "1", "--latency-runs", "1"],
    "train": ["profile=smoke", "logger=none"], "tests": ["-k", "not compile"],
}
# perf runs and short trainings: each precision, and bf16 with the attention scores and token stream in fp32
PERF_MODES = {"fp32": ["trainer.precision=fp32"], "bf16": ["trainer.precision=bf16"],
              "bf16, fp32 scores": ["trainer.precision=bf16", "arch.fp32_scores=true"]}
FULL = {
    "perf": PAPER_PERF, "perf_args": ["--batch-size", "64", "--steps", "48", "--warmup", "3", "--rounds", "4",
                                      "--infer-batches", "4", "--latency-runs", "10"],
    "train": PAPER_TRAIN, "tests": [],
}


def run_tests(device: str, extra: list[str]) -> dict:
    env = {**os.environ, "UNIAD_BENCH_GPU_TEST_DEVICE": device}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "gpu", "-s",
           "tests/test_gpu.py", "tests/test_class_maps_gpu.py", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    peaks = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("peak GiB per step")]
    return {"command": " ".join(cmd[1:]), "returncode": proc.returncode, "summary": lines[-1] if lines else "",
            "peak_gib_per_step": peaks[0] if peaks else None, "wall_s": round(time.perf_counter() - t0, 1),
            "tail": "\n".join(lines[-15:]) if proc.returncode else ""}


def run_perf(overrides: list[str], args: list[str], official: str | None, device: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        argv = [*overrides, *args, "--device", device, "--out", out]
        return perf.main(argv + (["--official", official] if official else []))


def run_training(overrides: list[str], device: str, seed: int) -> dict:
    from bench.job import run

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (mode, mode_overrides) in enumerate(PERF_MODES.items()):
            cfg = perf.compose_config([*overrides, f"trainer.device={device}", *mode_overrides, f"seed={seed}"])
            record = run(cfg, Path(tmp) / str(i))
            if record["status"] != "completed":
                raise BenchError(f"the {mode} training failed: {record.get('error')}")
            results[mode] = {"metrics": record["metrics"]["mean"], "timing": record["timing"],
                             "precision": record["env"]["precision"]}
    reference = results["fp32"]["metrics"]
    diff = {mode: {k: round(r["metrics"][k] - reference[k], 4) for k in reference
                   if isinstance(reference[k], (int, float))}
            for mode, r in results.items() if mode != "fp32"}
    return {"overrides": overrides, "seed": seed, "runs": results, "minus_fp32": diff}


def projection(rate: float | None) -> dict | None:
    if not rate:
        return None
    seconds = PAPER_EPOCHS * MVTEC_TRAIN_IMAGES / rate
    return {"train_images_per_s": rate, "epochs": PAPER_EPOCHS, "train_images": MVTEC_TRAIN_IMAGES,
            "projected_min": round(seconds / 60, 1)}


def markdown(result: dict) -> str:
    lines = [
        "# UniAD Bench GPU check",
        "",
        f"`make gpu-check` on {result['device_name']}, torch {result['torch']}, {result['wall_s']} s in all"
        + (" (CPU dry run at smoke sizes: the figures are not GPU figures)." if result["dry_run"] else "."),
        "",
        f"## gpu-marked tests\n\n`{result['tests']['command']}`: {result['tests']['summary']}"
        + (f"; peak GiB per step at batch 64: {result['tests']['peak_gib_per_step']}"
           if result["tests"]["peak_gib_per_step"] else "") + ".",
        "",
        "## Train step at the paper shapes, side by side with the official UniAD",
        "",
        "| precision | ours, cached (img/s) | ours, no cache (img/s) | official fp32 (img/s) | speed-up vs official "
        "| inference (img/s) | peak memory (MB) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for mode, p in result["perf"].items():
        lines.append(f"| {mode} | {p['train_images_per_s_cached']} | {p['train_images_per_s_uncached']} | "
                     f"{p['official_train_images_per_s'] or 'n/a'} | {p['speedup_vs_official_cached'] or 'n/a'} | "
                     f"{p['infer_images_per_s']} | {p['peak_memory_mb']} |")
    any_perf = next(iter(result["perf"].values()))
    c = any_perf["config"]
    lines += ["", f"{c['backbone']} (weights {c['weights']}), {c['image_size']} px → {c['feature_size'][0]}x"
              f"{c['feature_size'][1]}x{c['channels']}, batch {c['batch_size']}, {c['steps']} timed steps in "
              f"{c['rounds']} interleaved rounds. Official UniAD: {any_perf['official_status']}.", ""]
    for mode, proj in result["projection"].items():
        if proj:
            lines.append(f"Projected paper recipe ({proj['epochs']} epochs x {proj['train_images']} images) in {mode} "
                         f"from the cached steady-state throughput ({proj['train_images_per_s']} img/s): "
                         f"**{proj['projected_min']} min** of train steps (feature extraction and evaluation aside).")
    lines.append("")
    t = result["training"]
    lines += ["## Short paper-architecture training in each precision (same seed)", "",
              f"Overrides: `{' '.join(t['overrides'])}`, seed {t['seed']}.", "",
              "| precision | image AUROC | pixel AUROC | fit (s) | train img/s |", "| --- | --- | --- | --- | --- |"]
    for mode, r in t["runs"].items():
        m, tm = r["metrics"], r["timing"]
        auroc = [f"{m[k]:.4f}" if isinstance(m.get(k), float) else "n/a" for k in ("image_auroc", "pixel_auroc")]
        lines.append(f"| {mode} | {auroc[0]} | {auroc[1]} | {tm.get('fit_s')} | "
                     f"{tm.get('train_images_per_s')} |")
    lines.append("")
    for mode, diff in t["minus_fp32"].items():
        lines.append(f"{mode} − fp32: {', '.join(f'{k} {v:+.4f}' for k, v in diff.items())}.")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.tools.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (the check) | cpu (the tiny dry run)")
    parser.add_argument("--official", metavar="PATH", help="checkout of zhiyuanyou/UniAD to time side by side")
    parser.add_argument("--out", default=None, help="folder for perf_gpu.md/json (default: reports/ on CUDA, "
                                                     "outputs/gpu-check-dry-run on CPU)")
    parser.add_argument("--seed", type=int, default=133, help="seed of the short trainings")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu-check: CUDA is not available here; `make gpu-check DEVICE=cpu` is the dry run")
    dry = device.type != "cuda"
    plan = DRY if dry else FULL
    out = Path(args.out or (ROOT / ("outputs/gpu-check-dry-run" if dry else "reports")))
    t0 = time.perf_counter()
    print(f"gpu-check on {args.device}: gpu-marked tests", flush=True)
    tests = run_tests(args.device, plan["tests"])
    perf_runs = {}
    for mode, overrides in PERF_MODES.items():
        print(f"gpu-check: perf at {mode}", flush=True)
        perf_runs[mode] = run_perf([*plan["perf"], *overrides], plan["perf_args"], args.official, args.device)
    print(f"gpu-check: short trainings in {', '.join(PERF_MODES)}", flush=True)
    training = run_training(plan["train"], args.device, args.seed)
    result = {
        "device": device.type, "device_name": device_name(device), "torch": torch.__version__, "dry_run": dry,
        "official": args.official, "tests": tests, "perf": perf_runs,
        "projection": {mode: projection(p["train_images_per_s_cached"]) for mode, p in perf_runs.items()},
        "training": training, "wall_s": round(time.perf_counter() - t0, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(result)
    (out / "perf_gpu.md").write_text(text)
    (out / "perf_gpu.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(text)
    print(f"wrote {out / 'perf_gpu.md'} and {out / 'perf_gpu.json'} ({result['wall_s']} s)")
    if tests["returncode"] not in (0, 5):  # 5: no test collected
        raise SystemExit(f"gpu-check: the gpu-marked tests failed:\n{tests['tail']}")
    return result


if __name__ == "__main__":
    main()
