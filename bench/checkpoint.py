"""Checkpoints: learnable state, optimizer, scheduler, epoch, RNG state and the resolved config.

Stored as plain tensors and containers and loaded with ``weights_only=True`` (the config is a plain
dict from ``OmegaConf.to_container``). The config makes a checkpoint self-describing: a resume under a
config that changes results is refused (``check_resume``) and ``task=eval`` rebuilds the model from it
(``model_config``). Which keys "change results" is decided once, in ``bench.record.NEUTRAL_KEYS``.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError
from bench.record import config_diff

log = logging.getLogger(__name__)

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
    """Write ``payload`` to a temp file, then rename; on any error (disk full included) the temp file is
    removed before the error propagates, so the space it took is free for the failed job's record."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on the device to write checkpoint {path}") from exc
        raise


def load(path: Path, *, own: bool = True) -> dict:
    """Load a checkpoint. ``own``: the run's own ``last.ckpt`` (an unreadable one may be deleted to start
    over); False for a path the user gave (``task=eval ckpt=...``), which is only named."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BenchError(f"checkpoint {path} does not exist: check ckpt=") from None
    except Exception as exc:
        if own:
            raise BenchError(
                f"checkpoint {path} cannot be read ({type(exc).__name__}): delete it (or pass rerun=true) "
                "to start this job over"
            ) from exc
        raise BenchError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}): is it a last.ckpt written by a fit job?"
        ) from exc
    if not isinstance(state, dict) or "model" not in state:
        raise BenchError(f"checkpoint {path} holds no model state: is it a last.ckpt written by a fit job?")
    return state


def check_resume(state: dict, config: dict | None, path) -> None:
    """Refuse to resume from ``state`` when its config differs from ``config`` in a key that changes
    results, or when its weights are not finite (a run that diverged must not be resumed forever)."""
    saved = state.get("config")
    if config is not None and saved is None:
        raise BenchError(f"checkpoint {path} does not record its config, so resuming it under this one cannot be "
                         "checked: pass rerun=true to start over (the old files are kept in .previous/)")
    if config is not None:
        diff = config_diff(saved, config, resume=True)
        if diff:
            shown = ", ".join(diff[:6]) + (f" (+{len(diff) - 6} more)" if len(diff) > 6 else "")
            raise BenchError(f"checkpoint {path} was made with another config ({shown}): pass rerun=true to start "
                             "over (the old files are kept in .previous/), or use a new run dir")
    bad = [k for k, v in state["model"].items() if torch.is_tensor(v) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise BenchError(f"checkpoint {path} holds non-finite weights ({bad[0]}): pass rerun=true to start over")


def assert_finite(detector, epoch: int) -> None:
    """Raise ``FloatingPointError`` when a learnable parameter is NaN/inf (checked before a checkpoint)."""
    for name, p in detector.named_parameters():
        if p.requires_grad and not bool(torch.isfinite(p).all()):
            raise FloatingPointError(f"parameter {name} became non-finite in epoch {epoch}: lower trainer.lr or "
                                     "check the data (no checkpoint was written)")


def load_detector_state(detector, state: dict, path) -> None:
    missing, unexpected = detector.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise BenchError(f"checkpoint {path} does not match this model ({example}); was it made with another config?")
