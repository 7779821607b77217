"""The run record ``<run dir>/metrics.json`` (DESIGN.md section 4) and the provenance it carries."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import torch

RECORD = "metrics.json"

# The one list of config keys that never change a number of a run (a key names itself and everything
# under it). A checkpoint resumes only under a config equal to its own outside these keys (and outside
# RESUME_IGNORES: evaluation is redone after every resume); see ``config_diff``.
NEUTRAL_KEYS = (
    "paths",                # where data and caches live (the data itself is data.root, which counts)
    "logger",               # where scalars are logged
    "trainer.device",       # same math on another device (the record's env says which)
    "trainer.num_workers",  # data-loader processes
    "trainer.ckpt_every",   # how often last.ckpt is written
    "trainer.compile",      # torch.compile: the same function, compiled
    "cache.disk",           # features on disk or in memory: the same tensors
    "eval.save_maps",       # example maps written beside the record
    "eval.batch_size",      # evaluation batch size
    "rerun", "ckpt", "lock_stale_h",  # job control
    "experiment", "n_seeds", "profile_name",  # labels; the values they stand for are compared
    "vis",                  # read only by the vis tasks
)
RESUME_IGNORES = NEUTRAL_KEYS + ("eval",)
# What makes the model a function: task=eval and vis_recon rebuild it from the checkpoint's values of these.
ARCHITECTURE_KEYS = ("model", "decoder", "arch", "loss", "backbone", "data.image_size", "data.outlayers")


def flatten(config, prefix: str = "") -> dict:
    """``{"a.b.c": leaf}`` of a nested dict (lists are leaves)."""
    if not isinstance(config, dict):
        return {prefix: config}
    out = {}
    for key, value in config.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _under(key: str, prefixes) -> bool:
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def config_diff(old: dict, new: dict, *, resume: bool = False, only=None) -> list[str]:
    """Sorted keys whose values differ between two resolved configs, outside ``NEUTRAL_KEYS``
    (``resume``: also outside ``RESUME_IGNORES``); ``only``: compare just the keys under these prefixes."""
    a, b = flatten(old or {}), flatten(new or {})
    ignore = RESUME_IGNORES if resume else NEUTRAL_KEYS
    keys = [k for k in a.keys() | b.keys() if not _under(k, ignore) and (only is None or _under(k, only))]
    return sorted(k for k in keys if a.get(k, "<absent>") != b.get(k, "<absent>"))


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, sort_keys=False, default=str)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(run_dir: Path) -> dict | None:
    path = Path(run_dir) / RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(device: torch.device | str | None = None) -> dict:
    """Git SHA (and dirtiness), package versions, device, launcher and SLURM ids."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = platform.processor() or platform.machine() or "cpu"
    env = {
        "git_sha": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": _version("timm"),
        "hydra": _version("hydra-core"),
        "numpy": _version("numpy"),
        "scikit_learn": _version("scikit-learn"),
        "device": f"{device.type}: {device_name}",
        "hostname": platform.node(),
        "launcher": "slurm" if os.environ.get("SLURM_JOB_ID") else os.environ.get("UNIAD_BENCH_LAUNCHER", "basic"),
    }
    for key in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_RESTART_COUNT"):
        if os.environ.get(key):
            env[key.lower()] = os.environ[key]
    return env
