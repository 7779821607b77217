"""The run record's ``env``: where and with what a job ran (git state, package versions, device, launcher).

Apart from the record contract (``record``), which stays free of torch.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch


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
