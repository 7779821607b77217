"""Checkpoints: learnable state, optimizer, scheduler, epoch and RNG state (resume after preemption).

Stored as plain tensors and containers and loaded with ``weights_only=True``.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError

CKPT = "last.ckpt"


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def learnable_state(detector) -> dict:
    """The detector's state without a frozen backbone (it is rebuilt from its weights)."""
    frozen = bool(getattr(getattr(detector, "backbone", None), "frozen", False))
    return {k: v for k, v in detector.state_dict().items() if not (frozen and k.startswith("backbone."))}


def save(path: Path, **payload) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BenchError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}): delete it to start this job over"
        ) from exc


def load_detector_state(detector, state: dict, path) -> None:
    missing, unexpected = detector.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise BenchError(f"checkpoint {path} does not match this model ({example}); was it made with another config?")
