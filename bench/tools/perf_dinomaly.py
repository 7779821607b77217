"""Dinomaly's decoder at the paper shapes (not a test): ``python -m bench.tools.perf_dinomaly [--official PATH]``.

Dinomaly's recipe (``model=dinomaly profile=dinomaly``: DINOv2-with-registers ViT-B/14 at 392 px, 28x28 patch
tokens of 768 dims plus 1 class and 4 register tokens, 8 target layers, batch 16) on cached target layers:
random tensors of those shapes, so the frozen encoder is neither built nor timed. Per precision (``fp32``,
``bf16``; Dinomaly's linear attention has no softmax scores, so ``arch.fp32_scores`` does not apply):

* one training step, ``bench.fit.make_train_step`` as ``fit`` runs it on cached targets (the forward, the
  hard-mining loss at its final ``p``, backward, gradient clipping, the recipe's optimizer);
* one inference forward: decoder, anomaly map at image size with the blur, image scores.

With ``--official PATH`` (a guojiajeremy/Dinomaly checkout, ``bench.tools.official_dinomaly``), the official
``ViTill`` step (fp32, as released: fuse the 8 layers, decoder, ``global_cosine_hm_percent``, backward,
clipping, ``StableAdamW``) and its inference forward (``cal_anomaly_maps``) run on the same layers, interleaved
with ours (``bench.tools.measure.time_interleaved``) so both see the same machine load. Our step reads the
fused target the feature cache holds (``DinomalyDecoder.fuse``: the decoder input and the group means), the
official one averages the 8 layers inside its forward, as it would after its encoder.
Writes ``<out>/perf_dinomaly.md`` and ``<out>/perf_dinomaly.json``.
"""

from __future__ import annotations

import argparse
import time

import torch
from omegaconf import OmegaConf
from torch import nn

from bench import precision
from bench.build import instantiate_node, learnable_parameters
from bench.complexity import count_parameters
from bench.errors import BenchError
from bench.tools.measure import OtherCpuUse, PeakMemory, device_name, sync, time_interleaved, write_results
from bench.tools.official_dinomaly import (
    build_official_dinomaly,
    load_official_dinomaly,
    official_inference,
    official_root,
    official_train_step,
)
from bench.tools.perf import ROOT, compose_config, pick_device, timed_step

RECIPE = ["model=dinomaly", "profile=dinomaly", "backbone=dinov2_reg_vitb14"]  # its patch size: 14 px
PRECISIONS = ("fp32", "bf16")


class TokenShape(nn.Module):
    """The encoder's shape only (width, prefix tokens; frozen), what sizes the decoder: the targets are given."""

    frozen = True

    def __init__(self, embed_dim: int, prefix_tokens: int):
        super().__init__()
        self.embed_dim = embed_dim
        self.num_prefix_tokens = prefix_tokens

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        raise BenchError("perf_dinomaly times the decoder on given target layers; no encoder is run")


def benchmark(cfg, *, side: int, embed_dim: int, prefix: int, layers: int, batch_size: int, precisions: list[str],
              steps: int, warmup: int, rounds: int, official: str | None, device: torch.device, log=print) -> dict:
    torch.manual_seed(int(cfg.seed))
    other_cpu = OtherCpuUse()
    memory = PeakMemory(device)
    size = side * int(cfg.backbone.feature_stride)
    detector = instantiate_node(cfg.model, backbone=TokenShape(embed_dim, prefix), loss=instantiate_node(cfg.loss))
    detector = detector.to(device)
    ramp = int(cfg.loss.get("ramp_iterations", 0))
    detector.set_iteration(ramp)  # hard mining at its final p, as after the recipe's ramp
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randn(batch_size, layers, prefix + side * side, embed_dim, generator=generator).to(device)
    with torch.no_grad():
        fused = detector.reconstruction.fuse(tokens)  # what the feature cache holds
    log(f"Dinomaly decoder: {layers} target layers of {prefix}+{side}x{side} tokens x {embed_dim}, batch "
        f"{batch_size}, {size} px, {device}")

    train, infer = {}, {}
    for mode in precisions:
        trainer = OmegaConf.merge(cfg.trainer, {"precision": precision.check(mode)})
        train[f"train {mode}"] = timed_step(detector, trainer, device, lambda i: ("features", fused))

        @torch.no_grad()
        def ours(i: int, mode=mode) -> None:
            detector.eval()
            precision.configure(mode, device)
            with precision.autocast(mode, device):
                rec = detector.reconstruct(fused)
                detector.image_scores(fused, rec, detector.anomaly_map(fused, rec, (size, size)))

        infer[f"infer {mode}"] = ours

    status, official_params = "not requested (--official PATH)", None
    if official:
        if official_root(official) is None:
            status = f"skipped: {official} is no guojiajeremy/Dinomaly checkout (models/uad.py, utils.py, ...)"
        else:
            try:
                code = load_official_dinomaly(official)
                model, trainable = build_official_dinomaly(
                    code, embed_dim=embed_dim, num_heads=int(cfg.model.num_heads), num_blocks=int(cfg.model.num_blocks),
                    num_layers=layers, groups=OmegaConf.to_container(cfg.model.groups), register_tokens=prefix - 1,
                    bottleneck_dropout=float(cfg.model.bottleneck_dropout))
                model = model.to(device)
                official_params = count_parameters(trainable)
                step = official_train_step(code, model, trainable, p=float(cfg.loss.p), factor=float(cfg.loss.factor),
                                           clip=float(cfg.trainer.clip_grad), lr=float(cfg.trainer.lr),
                                           weight_decay=float(cfg.trainer.weight_decay))
                forward = official_inference(code, model, size)

                def official_fp32(fn):
                    def run(i: int) -> None:
                        precision.configure("fp32", device)
                        fn(tokens)
                    return run

                train["official train fp32"] = official_fp32(step)
                infer["official infer fp32"] = official_fp32(forward)
                status = "measured (fp32, as released)"
            except Exception as exc:  # an incompatible checkout: say why, measure the rest
                status = f"skipped: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        log(f"official Dinomaly: {status}")

    log(f"training: {', '.join(train)}; {warmup} warm-up + {steps} timed steps each in {rounds} rounds")
    timed = time_interleaved(train, steps, warmup, rounds, device, memory, probes=1)
    log(f"inference: {', '.join(infer)}; {steps} batches each")
    timed.update(time_interleaved(infer, steps, 1, rounds, device, memory, probes=1))
    sync(device)

    def rate(name):
        return round(steps * batch_size / timed[name]["seconds"], 3) if name in timed else None

    def ratio(ours: str, theirs: str) -> float | None:  # official time / ours: > 1 = ours faster
        return round(timed[theirs]["seconds"] / timed[ours]["seconds"], 3) if {ours, theirs} <= set(timed) else None

    return {
        "device": device.type, "device_name": device_name(device), "torch": torch.__version__,
        "config": {"model": "dinomaly", "layers": layers, "prefix_tokens": prefix, "side": side, "embed_dim": embed_dim,
                   "image_size": size, "batch_size": batch_size, "steps": steps, "warmup_steps": warmup,
                   "rounds": rounds, "num_blocks": int(cfg.model.num_blocks), "num_heads": int(cfg.model.num_heads),
                   "attention": str(cfg.model.attention), "groups": OmegaConf.to_container(cfg.model.groups),
                   "loss": str(cfg.loss.name), "hard_mining_p": detector.criterion.p,
                   "optimizer": str(cfg.trainer.optimizer._target_), "input": "random target-layer tokens"},
        "phases": {name: {**t, "images_per_s": rate(name)} for name, t in timed.items()},
        "learnable_params": sum(p.numel() for p in learnable_parameters(detector)),
        "official_params": official_params,
        "official_status": status,
        "speedup_vs_official_fp32": ratio("train fp32", "official train fp32"),
        "infer_speedup_vs_official_fp32": ratio("infer fp32", "official infer fp32"),
        "peak_memory_kind": memory.kind,
        "other_processes_cpu_share": other_cpu.share(),
    }


def markdown(result: dict) -> str:
    c = result["config"]
    lines = ["# Dinomaly decoder performance", "",
             f"`python -m bench.tools.perf_dinomaly` on {result['device_name']}, torch {result['torch']}: "
             f"{c['layers']} target layers of {c['prefix_tokens']}+{c['side']}x{c['side']} tokens x {c['embed_dim']} "
             f"({c['image_size']} px), {c['num_blocks']} {c['attention']}-attention blocks of {c['num_heads']} heads, "
             f"groups {c['groups']}, loss {c['loss']} at p={c['hard_mining_p']}, {c['optimizer']}; batch "
             f"{c['batch_size']}, {c['warmup_steps']} warm-up + {c['steps']} timed steps per phase in {c['rounds']} "
             f"interleaved rounds; {c['input']} (the frozen encoder is not timed).", "",
             "| phase | images/s | synchronised ms/step | enqueue ms/step | peak MB | extra MB |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, t in result["phases"].items():
        lines.append(f"| {name} | {t['images_per_s']} | {t['step_ms']} | {t['enqueue_ms']} | {t['peak_mb']} | "
                     f"{t['extra_mb']} |")
    lines += ["", f"Speed-up vs the official decoder in fp32: train {result['speedup_vs_official_fp32']}, inference "
              f"{result['infer_speedup_vs_official_fp32']} (official time / ours, same run). Learnable params: ours "
              f"{result['learnable_params']:,}, official {result['official_params']}. Official Dinomaly: "
              f"{result['official_status']}. Our inference includes the evaluation's blur and top-1% image score; "
              "the official one is its forward and cal_anomaly_maps. Dinomaly has no fp32-scores mode (linear "
              f"attention, no softmax). Memory is {result['peak_memory_kind']}."]
    share = result.get("other_processes_cpu_share")
    if share is not None and result["device"] == "cpu":
        lines.append(f"Other processes used {100 * share:.1f}% of the host's CPUs during the run.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.tools.perf_dinomaly", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="Hydra overrides after RECIPE's")
    parser.add_argument("--official", metavar="PATH", help="checkout of guojiajeremy/Dinomaly to time side by side")
    parser.add_argument("--side", type=int, default=28, help="patch grid side (392 px / 14 = 28)")
    parser.add_argument("--embed-dim", type=int, default=768, help="token width (ViT-B: 768)")
    parser.add_argument("--prefix", type=int, default=5, help="class + register tokens (5)")
    parser.add_argument("--layers", type=int, default=8, help="target layers (8)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch size (the recipe's 16)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="comma-separated: fp32,bf16")
    parser.add_argument("--steps", type=int, default=6, help="timed steps per phase (default 6)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps per phase (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--device", default=None, help="cpu | cuda | auto (default: trainer.device)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results"), help="folder for perf_dinomaly.md/json")
    args = parser.parse_intermixed_args(argv)
    if min(args.side, args.embed_dim, args.layers, args.batch_size, args.steps, args.rounds) < 1 or args.warmup < 0:
        parser.error("--side, --embed-dim, --layers, --batch-size, --steps and --rounds must be >= 1")
    cfg = compose_config([*RECIPE, *args.overrides])
    device = pick_device(args.device or cfg.trainer.device)
    t0 = time.perf_counter()
    result = benchmark(cfg, side=args.side, embed_dim=args.embed_dim, prefix=args.prefix, layers=args.layers,
                       batch_size=args.batch_size, precisions=[m for m in args.precisions.split(",") if m],
                       steps=args.steps, warmup=args.warmup, rounds=min(args.rounds, args.steps),
                       official=args.official, device=device)
    result["overrides"] = list(args.overrides)
    return write_results(result, markdown(result), args.out, "perf_dinomaly", t0)


if __name__ == "__main__":
    main()
