"""Writing the run record ``<run dir>/metrics.json`` (its shape: ``reports.run_record``) and its provenance."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from bench.atomic import write_text_atomic
from reports.run_record import RECORD, SCHEMA_VERSION

__all__ = ["RECORD", "SCHEMA_VERSION", "environment", "read_record", "write_json_atomic"]


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


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
