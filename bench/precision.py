"""Numeric precision of training and evaluation (docs/performance.md): ``fp32`` | ``tf32`` | ``bf16``.

* ``fp32``: real fp32 matmuls everywhere (TF32 off on CUDA, oneDNN kept at IEEE fp32 on CPU), the
  official recipe's precision and ``profile=paper``'s.
* ``tf32``: fp32 tensors, TF32 tensor-core matmuls and convolutions on CUDA. CPUs have no TF32 here, so
  on CPU it runs as ``fp32`` (and is recorded so).
* ``bf16``: ``torch.autocast`` to bfloat16 (matmuls, attention, convolutions); parameters, gradients,
  optimizer state and the loss stay fp32 (the loss is computed on fp32 casts of its inputs).

What autocast keeps in fp32 differs by device: CUDA's autocast runs LayerNorm (and softmax, the losses) in
fp32, so on CUDA plain ``bf16`` already carries an fp32 token stream after every norm; CPU's keeps LayerNorm
in its input's dtype (bf16 after a bf16 residual add). docs/performance.md, has the table per device.

``configure`` sets the process-wide flags (TF32, oneDNN fp32, and the SDPA backends: cuDNN attention off
unless ``allow_cudnn_attention(True)``, so training and evaluation run the same fused kernels);
``autocast`` is the context a forward runs in; ``effective`` is what the matmuls really ran in, for the run
record's ``env``.
"""

from __future__ import annotations

import torch

from bench.errors import BenchError

PRECISIONS = ("fp32", "tf32", "bf16")
_CUDNN_ATTENTION = [False]  # cuDNN's SDPA kernel: eligible for bf16 evaluation only, and with open mask bugs


def allow_cudnn_attention(allowed: bool) -> None:
    """Let SDPA pick cuDNN's attention kernel from the next ``configure`` on (off by default)."""
    _CUDNN_ATTENTION[0] = bool(allowed)


def check(precision: str) -> str:
    if precision not in PRECISIONS:
        raise BenchError(f"precision={precision!r} is unknown; choose one of {', '.join(PRECISIONS)}")
    return precision


def effective(precision: str, device: torch.device) -> str:
    """What the matmuls run in: ``bf16``, ``tf32`` (CUDA only) or ``fp32``."""
    check(precision)
    if precision == "tf32" and torch.device(device).type != "cuda":
        return "fp32"
    return precision


def configure(precision: str, device: torch.device) -> str:
    """Set the TF32 / fp32-matmul flags for ``precision`` on ``device``; return ``effective(...)``.

    The flags are process-wide, so every fit and evaluation sets them again before it runs.
    """
    used = effective(precision, device)
    tf32 = used == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    # "highest" also keeps oneDNN's CPU matmuls in IEEE fp32 ("high" would allow reduced precision)
    torch.set_float32_matmul_precision("high" if tf32 else "highest")
    torch.backends.cuda.enable_cudnn_sdp(_CUDNN_ATTENTION[0])
    return used


def autocast(precision: str, device: torch.device):
    """The autocast context of ``precision``: bf16 for ``bf16``, disabled otherwise."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=check(precision) == "bf16")


def provenance(cfg, device: torch.device) -> dict:
    """The run record's ``env`` entries: what the matmuls of training and of evaluation ran in."""
    return {"precision": effective(str(cfg.trainer.precision), device),
            "eval_precision": effective(str(cfg.eval.precision), device)}
