"""Ctrl-C during training keeps the last finished epoch: ``fit`` hands over, after every epoch that wrote
no checkpoint, a copy of what ``last.ckpt`` would hold (model, optimizer, scheduler, RNG: a few MB for the
learnable part); ``bench/__main__.py`` saves it on KeyboardInterrupt, so the same command resumes from that
epoch (``bench.fit`` resumes from ``last.ckpt``) with the numbers an uninterrupted run gives.

A copy, not the live state: an interrupt lands mid-epoch, when the model holds part of the next epoch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from bench import checkpoint


@dataclass
class Training:
    path: Path  # the run dir's last.ckpt
    epochs: int  # the fit's epoch count
    saved: int | None  # the epoch last.ckpt holds (0-based), None before the first
    done: int | None = None  # the last finished epoch
    state: dict | None = None  # a checkpoint of ``done`` not yet written


_current: Training | None = None


def begin(path: Path, epochs: int, saved: int | None) -> None:
    global _current
    _current = Training(Path(path), int(epochs), saved, saved)


def epoch_done(epoch: int, saved: bool, state: Callable[[], dict]) -> None:
    """After epoch ``epoch``: ``saved`` when last.ckpt was just written, else keep a copy of ``state()``."""
    if _current is None:
        return
    _current.done = epoch
    if saved:
        _current.saved, _current.state = epoch, None
    else:
        _current.state = copy.deepcopy(state())


def end() -> None:
    global _current
    _current = None


def save_pending() -> Training | None:
    """Write the kept checkpoint (if finite) and return where training stood; None when none was running."""
    global _current
    now, _current = _current, None
    if now is not None and now.state is not None:
        tensors = [t for t in now.state["model"].values() if torch.is_tensor(t) and t.is_floating_point()]
        if all(bool(torch.isfinite(t).all()) for t in tensors):
            checkpoint.save(now.path, **now.state)
            now.saved, now.state = now.done, None
    return now


def stopped_line(now: Training | None, run_dir: Path, command: str) -> str:
    """The one line printed on Ctrl-C: where the job stopped and that ``command`` resumes it."""
    ckpt = Path(run_dir) / checkpoint.CKPT
    if now is None:
        where = f"stopped outside training in {run_dir}"
        kept = f"; {ckpt.name} is kept" if ckpt.is_file() else ""
    else:
        at = (now.done + 1 if now.done is not None else 0) + 1
        where = f"stopped in epoch {min(at, now.epochs)}/{now.epochs} in {run_dir}"
        kept = (f"; {ckpt.name} holds epoch {now.saved + 1}/{now.epochs}" if now.saved is not None
                else "; no epoch finished, nothing saved")
    return f"interrupted: {where}{kept}; the same command resumes it: {command}"
