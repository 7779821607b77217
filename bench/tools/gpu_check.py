"""The prepared GPU check: ``python -m bench.tools.gpu_check --device cuda --out DIR [--official PATH]``.

On a lent machine it runs through ``bash ops/gpu/check_bare.sh OUT_DIR`` (no venv, no network:
ops/gpu/README.md); ``make gpu-check`` runs it from the venv. Its steps, in this order, each on its own:

1. ``bench.tools.perf`` at the paper shapes (EfficientNet-b4 with ``backbone.weights=none``, 224 px, 272x14x14
   features, batch 64) in fp32, bf16 and bf16 with ``arch.fp32_scores=true``, the official UniAD timed beside
   ours in the same process when ``--official`` names a checkout of zhiyuanyou/UniAD;
   then Dinomaly's decoder step and inference at its paper shapes (``bench.tools.perf_dinomaly``: 8 target layers
   of 5+28x28 tokens x 768, batch 16) in fp32 and bf16, beside the official ``ViTill`` step when
   ``--official-dinomaly`` names a checkout of guojiajeremy/Dinomaly;
2. a short training of the paper architecture (``profile=paper`` sizes) on the offline synthetic data in the
   same three settings (same seed), with each one's image/pixel AUROC difference to fp32;
3. the ``gpu``-marked tests but the compile tests, each under a per-test timeout (tests/test_gpu.py: each
   precision, the device-resident cache, the SDPA kernels, peak memory; tests/test_class_maps_gpu.py: the exact
   pixel metrics of a class held on the device equal the host's);
4. the compile tests last (they compile with inductor, the slowest and least tried part).

Never losing a figure: each step runs in its own ``try``; ``perf_gpu.json`` and ``perf_gpu.md`` are rewritten
atomically before and after every step (a step killed by the overall timeout shows as ``running``); a step
that would start with less than its minimum of the ``--budget-s`` left is skipped and named. The exit status
is non-zero when any step failed or was skipped, and the last line names them. The projected wall time of the
paper recipe (1000 epochs on MVTec's 3,629 training images) comes from each setting's cached train throughput.

``--device cpu`` is the dry run (CI and the rehearsal): smoke sizes, one step, no compile tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

from bench.errors import BenchError
from bench.tools import perf, perf_dinomaly
from bench.tools.measure import device_name
from metrics import DEFAULT_METRICS, label

ROOT = Path(__file__).resolve().parents[2]
MVTEC_TRAIN_IMAGES = 3629
PAPER_EPOCHS = 1000
# perf runs and short trainings: each precision, and bf16 with the attention scores and token stream in fp32
MODES = {"fp32": ["trainer.precision=fp32"], "bf16": ["trainer.precision=bf16"],
         "bf16, fp32 scores": ["trainer.precision=bf16", "arch.fp32_scores=true"]}
PAPER_PERF = ["profile=paper", "backbone=efficientnet_b4", "backbone.weights=none", "data.image_size=224"]
# the short training: Table S1's sizes (profile=paper), the offline synthetic data and the offline backbone
PAPER_TRAIN = ["profile=paper", "logger=none", "trainer.epochs=60", "trainer.lr=1e-3", "trainer.lr_step=50",
               "trainer.ckpt_every=0"]
PLANS = {
    "full": {"perf": PAPER_PERF,
             "perf_args": ["--batch-size", "64", "--steps", "48", "--warmup", "3", "--rounds", "4",
                           "--infer-batches", "4", "--latency-runs", "10"],
             "dinomaly_args": ["--steps", "12", "--warmup", "2", "--rounds", "3"],
             "train": PAPER_TRAIN, "tests": "not compile", "test_timeout_s": 90, "compile": True,
             "compile_timeout_s": 150},
    "dry": {"perf": ["profile=smoke"],
            "perf_args": ["--batch-size", "2", "--steps", "1", "--warmup", "0", "--rounds", "1",
                          "--infer-batches", "1", "--latency-runs", "1"],
            # Dinomaly's decoder at toy sizes: 4x4 tokens of 48 dims (4 heads), batch 2
            "dinomaly_args": ["--side", "4", "--embed-dim", "48", "--batch-size", "2", "--steps", "1", "--warmup", "0",
                              "--rounds", "1", "model.num_heads=4"],
            "train": ["profile=smoke", "logger=none"], "test_timeout_s": 60, "compile": False, "compile_timeout_s": 0,
            # the 760-image class is a device figure (13 s on a CPU, nothing learnt there)
            "tests": "not compile and not 760_images"},
}
GPU_TESTS = ["tests/test_gpu.py", "tests/test_class_maps_gpu.py"]
MIN_STEP_S = {"perf": 20, "train": 20, "tests": 15, "compile": 60}  # a step starts only with this much left


# ------------------------------------------------------------------------------------------------ report


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class Report:
    """The check's results, rewritten to ``out`` (JSON and Markdown) before and after every step."""

    def __init__(self, out: Path, header: dict, budget_s: float | None):
        self.out = out
        self.t0 = time.monotonic()
        self.deadline = None if budget_s is None else self.t0 + budget_s
        self.data = {**header, "steps": {}, "perf": {}, "training": {}, "tests": {}}
        out.mkdir(parents=True, exist_ok=True)
        self.write()

    def left_s(self) -> float | None:
        return None if self.deadline is None else self.deadline - time.monotonic()

    def write(self) -> None:
        self.data["wall_s"] = round(time.monotonic() - self.t0, 1)
        _write_atomic(self.out / "perf_gpu.json", json.dumps(self.data, indent=1, default=str) + "\n")
        _write_atomic(self.out / "perf_gpu.md", markdown(self.data))

    def step(self, name: str, kind: str, fn):
        """Run ``fn()`` as step ``name``; return its result, or None when it failed or was skipped."""
        entry = {"status": "running"}
        self.data["steps"][name] = entry
        left = self.left_s()
        if left is not None and left < MIN_STEP_S[kind]:
            entry.update(status="skipped", error=f"out of time ({left:.0f} s left, {MIN_STEP_S[kind]} s needed)")
            print(f"gpu-check: {name}: skipped, {entry['error']}", flush=True)
            self.write()
            return None
        self.write()
        print(f"gpu-check: {name}", flush=True)
        t0, cpu0 = time.monotonic(), _cpu_s()
        try:
            result = fn()
            entry["status"] = "ok"
            return result
        except Exception as exc:  # one step's failure (a CUDA error, a refused kernel) keeps every other figure
            message = str(exc).strip().splitlines()
            entry.update(status="failed", error=f"{type(exc).__name__}: {message[0] if message else ''}"[:500])
            traceback.print_exc()
            print(f"gpu-check: {name}: FAILED: {entry['error']}", flush=True)
            return None
        finally:
            entry["wall_s"] = round(time.monotonic() - t0, 1)
            entry["cpu_s"] = round(_cpu_s() - cpu0, 1)  # this process's and its finished children's CPU time
            self.write()

    def not_ok(self) -> list[str]:
        return [name for name, s in self.data["steps"].items() if s["status"] != "ok"]


# ------------------------------------------------------------------------------------------------- steps


def run_perf(overrides: list[str], args: list[str], official: str | None, device: str, cudnn: bool) -> dict:
    with tempfile.TemporaryDirectory() as out:
        argv = [*overrides, *args, "--device", device, "--out", out]
        argv += (["--official", official] if official else []) + (["--cudnn-attention"] if cudnn else [])
        return perf.main(argv)


def run_perf_dinomaly(args: list[str], official: str | None, device: str) -> dict:
    with tempfile.TemporaryDirectory() as out:
        argv = [*args, "--device", device, "--out", out] + (["--official", official] if official else [])
        return perf_dinomaly.main(argv)


def run_training(overrides: list[str], device: str, seed: int) -> dict:
    """One short training (``bench.job.run``) in a scratch run dir: mean metrics, timing, precision."""
    from bench.job import run

    with tempfile.TemporaryDirectory() as tmp:
        cfg = perf.compose_config([*overrides, f"trainer.device={device}", f"seed={seed}"])
        record = run(cfg, Path(tmp) / "run")
    if record["status"] != "completed":
        raise BenchError(f"the training failed: {record.get('error')}")
    return {"overrides": overrides, "metrics": record["metrics"]["mean"], "timing": record["timing"],
            "precision": record["env"]["precision"]}


def minus_fp32(runs: dict) -> dict:
    """Each setting's mean metrics minus fp32's (the settings that ran; nothing without an fp32 run)."""
    reference = (runs.get("fp32") or {}).get("metrics")
    if not reference:
        return {}
    return {mode: {k: round(r["metrics"][k] - reference[k], 4) for k in reference
                   if isinstance(reference[k], (int, float)) and isinstance(r["metrics"].get(k), (int, float))}
            for mode, r in runs.items() if mode != "fp32" and r}


_OUTCOME = re.compile(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (.+)$")  # pytest -rA's summary lines


def run_tests(device: str, select: str, per_test_s: int, log: Path, figures: Path, timeout_s: float | None) -> dict:
    """The ``gpu``-marked tests matching ``select`` in a subprocess, output appended to ``log``.

    Per-test timeout by pytest-timeout where it is installed (the lent machine has it), and the whole
    run under ``timeout_s``. ``error`` in the result says why the run is not ok (a failed test, a timeout), or None.
    """
    env = {**os.environ, "UNIAD_BENCH_GPU_TEST_DEVICE": device, "UNIAD_BENCH_GPU_FIGURES": str(figures)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-m", "gpu", "-s",
           *GPU_TESTS, "-k", select]
    has_timeout = importlib.util.find_spec("pytest_timeout") is not None
    if has_timeout:
        cmd += [f"--timeout={per_test_s}"]
    t0 = time.monotonic()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd[1:])}\n")
        f.flush()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=timeout_s)
            output, code = proc.stdout, proc.returncode
        except subprocess.TimeoutExpired as exc:
            output = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            code = None
        f.write(output)
    lines = [ln for ln in output.splitlines() if ln.strip()]
    outcomes = {m.group(2)[:300]: m.group(1) for m in map(_OUTCOME.match, lines) if m}
    result = {"command": " ".join(cmd[1:]), "returncode": code, "summary": lines[-1] if lines else "",
              "per_test_timeout_s": per_test_s if has_timeout else None, "outcomes": outcomes,
              "wall_s": round(time.monotonic() - t0, 1)}
    if figures.is_file():
        result["figures"] = json.loads(figures.read_text())
    result["error"] = (f"the tests ran past {timeout_s:.0f} s: {result['summary']}" if code is None
                       else f"pytest exit {code}: {result['summary']}" if code not in (0, 5) else None)  # 5: none ran
    return result


def projection(rate: float | None) -> dict | None:
    if not rate:
        return None
    seconds = PAPER_EPOCHS * MVTEC_TRAIN_IMAGES / rate
    return {"train_images_per_s": rate, "epochs": PAPER_EPOCHS, "train_images": MVTEC_TRAIN_IMAGES,
            "projected_min": round(seconds / 60, 1)}


def preflight(plan: dict) -> dict:
    """Compose every step's config and build its detector on the CPU, importing what the steps import."""
    import bench.job  # noqa: F401  (the trainings' entry point and everything it imports)
    from bench.build import build_detector

    built = {}
    for mode, overrides in MODES.items():
        for step in ("perf", "train"):
            cfg = perf.compose_config([*plan[step], *overrides])
            if mode == "fp32":  # the other settings change precisions only: the same modules and weights
                built[f"{step} {mode}"] = type(build_detector(cfg)).__name__
    perf.compose_config(perf_dinomaly.RECIPE)
    print(f"gpu-check preflight: {2 * len(MODES) + 1} configs compose, {len(built)} detectors build")
    return built


# ---------------------------------------------------------------------------------------------- markdown


def _cell(value) -> str:
    return "n/a" if value is None else str(value)


def markdown(data: dict) -> str:
    """The report as Markdown; every section tolerates missing parts (a failed or unfinished step)."""
    lines = ["# UniAD Bench GPU check", "",
             f"`gpu_check` on {data.get('device_name')}, torch {data.get('torch')}, {data.get('wall_s')} s so far"
             + (" (CPU dry run at smoke sizes: the figures are not GPU figures)." if data.get("dry_run") else "."),
             "", "| step | status | wall s | CPU s | error |", "| --- | --- | --- | --- | --- |"]
    for name, s in data.get("steps", {}).items():
        lines.append(f"| {name} | {s['status']} | {_cell(s.get('wall_s'))} | {_cell(s.get('cpu_s'))} | "
                     f"{s.get('error', '')} |")
    runs = data.get("perf", {})
    if runs:
        lines += ["", "## Train step at the paper shapes, beside the official UniAD", "",
                  "| precision | ours, cached (img/s) | ours, no cache (img/s) | official fp32 (img/s) | speed-up "
                  "| ms/step synchronised / enqueue (ours, cached) | official ms/step sync / enqueue "
                  "| inference img/s | latency ms | peak MB ours abs / extra | peak MB official abs / extra "
                  "| SDPA train / eval |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for mode, p in runs.items():
            t = p.get("step_ms_by_phase", {})
            ours, off = t.get("train_cached", {}), t.get("official_train", {})
            k = p.get("sdpa_kernels", {})
            lines.append(
                f"| {mode} | {_cell(p.get('train_images_per_s_cached'))}"
                f" | {_cell(p.get('train_images_per_s_uncached'))}"
                f" | {_cell(p.get('official_train_images_per_s'))} | {_cell(p.get('speedup_vs_official_cached'))}"
                f" | {_cell(ours.get('step_ms'))} / {_cell(ours.get('enqueue_ms'))}"
                f" | {_cell(off.get('step_ms'))} / {_cell(off.get('enqueue_ms'))}"
                f" | {_cell(p.get('infer_images_per_s'))} | {_cell(p.get('latency_ms_batch1'))}"
                f" | {_cell(p.get('peak_memory_mb'))} / {_cell(p.get('extra_memory_mb'))}"
                f" | {_cell(p.get('official_peak_memory_mb'))} / {_cell(p.get('official_extra_memory_mb'))}"
                f" | {'; '.join(k.get('train', [])) or 'n/a'} / {'; '.join(k.get('eval', [])) or 'n/a'} |")
        any_perf = next(iter(runs.values()))
        c = any_perf["config"]
        lines += ["", f"{c['backbone']} (weights {c['weights']}), {c['image_size']} px → {c['feature_size'][0]}x"
                  f"{c['feature_size'][1]}x{c['channels']}, batch {c['batch_size']}, {c['steps']} timed steps in "
                  f"{c['rounds']} interleaved rounds; inference and latency in the row's precision. Memory is "
                  f"{any_perf.get('peak_memory_kind')}: absolute peak, and the extra over what was resident when the "
                  "phase began. A step whose enqueue time is close to its synchronised time is host-bound. "
                  f"Official UniAD: {any_perf['official_status']}.", ""]
        for mode, p in runs.items():
            proj = projection(p.get("train_images_per_s_cached"))
            if proj:
                lines.append(f"Projected paper recipe ({proj['epochs']} epochs x {proj['train_images']} images) in "
                             f"{mode} from the cached steady-state throughput ({proj['train_images_per_s']} img/s): "
                             f"**{proj['projected_min']} min** of train steps (feature extraction and evaluation "
                             "aside).")
    dinomaly = data.get("dinomaly")
    if dinomaly:
        lines += ["", "## Dinomaly's decoder step at the paper shapes, beside the official ViTill", "",
                  *perf_dinomaly.markdown(dinomaly).splitlines()[2:]]
    training = data.get("training", {})
    if training:
        lines += ["", "## Short paper-architecture training in each precision (same seed)", "",
                  f"Overrides: `{' '.join(data.get('train_overrides', []))}` and the row's, seed {data.get('seed')}.",
                  "",
                  f"| precision | {' | '.join(label(k) for k in DEFAULT_METRICS)} | fit (s) | train img/s |",
                  "| --- | --- | --- | --- | --- |"]
        for mode, r in training.items():
            m, tm = r["metrics"], r["timing"]
            values = [f"{m[k]:.4f}" if isinstance(m.get(k), float) else "n/a" for k in DEFAULT_METRICS]
            lines.append(f"| {mode} | {' | '.join(values)} | {_cell(tm.get('fit_s'))} | "
                         f"{_cell(tm.get('train_images_per_s'))} |")
        lines.append("")
        for mode, diff in minus_fp32(training).items():
            lines.append(f"{mode} − fp32: {', '.join(f'{k} {v:+.4f}' for k, v in diff.items())}.")
    for name, t in data.get("tests", {}).items():
        lines += ["", f"## {name}", "", f"`{t['command']}` (per-test timeout {_cell(t['per_test_timeout_s'])} s): "
                  f"{t['summary']}", ""]
        lines += [f"- {outcome} {test}" for test, outcome in t.get("outcomes", {}).items()]
        if t.get("figures"):
            lines.append(f"- figures: {json.dumps(t['figures'])}")
    return "\n".join(lines) + "\n"


# -------------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.tools.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (the check) | cpu (the dry run)")
    parser.add_argument("--official", metavar="PATH", help="checkout of zhiyuanyou/UniAD to time side by side")
    parser.add_argument("--official-dinomaly", metavar="PATH",
                        help="checkout of guojiajeremy/Dinomaly to time beside Dinomaly's decoder")
    parser.add_argument("--out", default=None, help="folder for perf_gpu.md/json and pytest.log (default: "
                                                    "docs/results/ on CUDA, outputs/gpu-check-dry-run on CPU)")
    parser.add_argument("--seed", type=int, default=133, help="seed of the short trainings")
    parser.add_argument("--budget-s", type=float, default=None, help="seconds for all steps; a step that would "
                                                                     "start with less than its minimum left is skipped")
    parser.add_argument("--cudnn-attention", action="store_true", help="let SDPA use cuDNN attention (off by default)")
    parser.add_argument("--preflight", action="store_true", help="only check that every step's config composes and "
                                                                 "its models build (the bundle is complete)")
    args = parser.parse_args(argv)
    plan = PLANS["dry" if args.device == "cpu" else "full"]
    if args.preflight:
        return preflight(plan)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu-check: CUDA is not available here; `make gpu-check DEVICE=cpu` is the dry run")
    dry = device.type != "cuda"
    out = Path(args.out or (ROOT / ("outputs/gpu-check-dry-run" if dry else "docs/results")))
    header = {"device": device.type, "device_name": device_name(device), "torch": torch.__version__, "dry_run": dry,
              "official": args.official, "official_dinomaly": args.official_dinomaly, "seed": args.seed,
              "budget_s": args.budget_s, "train_overrides": plan["train"],
              "cudnn_attention": args.cudnn_attention}
    report = Report(out, header, args.budget_s)
    log, figures = out / "pytest.log", Path(tempfile.mkdtemp()) / "figures.json"
    for mode, overrides in MODES.items():
        result = report.step(f"perf {mode}", "perf", lambda o=overrides: run_perf(
            [*plan["perf"], *o], plan["perf_args"], args.official, args.device, args.cudnn_attention))
        if result is not None:
            report.data["perf"][mode] = result
            report.data.setdefault("projection", {})[mode] = projection(result.get("train_images_per_s_cached"))
    result = report.step("perf dinomaly", "perf", lambda: run_perf_dinomaly(
        plan["dinomaly_args"], args.official_dinomaly, args.device))
    if result is not None:
        report.data["dinomaly"] = result
    for mode, overrides in MODES.items():
        result = report.step(f"train {mode}", "train",
                             lambda o=overrides: run_training([*plan["train"], *o], args.device, args.seed))
        if result is not None:
            report.data["training"][mode] = result
    report.data["minus_fp32"] = minus_fp32(report.data["training"])

    def tests(select: str, per_test: int, name: str):
        def go():
            left = report.left_s()
            result = run_tests(args.device, select, per_test, log, figures, None if left is None else max(left - 5, 1))
            report.data["tests"][name] = result  # kept when a test failed as well
            if result["error"]:
                raise BenchError(result["error"])

        report.step(name, "compile" if "compile" in name else "tests", go)

    tests(plan["tests"], plan["test_timeout_s"], "gpu tests")
    if plan["compile"]:
        tests("compile", plan["compile_timeout_s"], "compile tests")
    report.write()
    print(markdown(report.data))
    print(f"wrote {out / 'perf_gpu.md'} and {out / 'perf_gpu.json'} ({report.data['wall_s']} s)")
    failed = report.not_ok()
    if failed:
        raise SystemExit(f"gpu-check: not ok: {', '.join(failed)} (the report keeps every other step)")
    return report.data


if __name__ == "__main__":
    main()
