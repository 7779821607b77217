"""The machine a GPU check ran on, as ``key: value`` lines: ``python3 ops/gpu/environment.py FILE``.

Run by file path (not ``-m``) so that it needs torch alone: it is written first, before the bundle is
installed, and still says what the machine was when everything else fails.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys


def _version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _nvidia_smi() -> list[tuple[str, str]]:
    query = "name,driver_version,memory.total,compute_cap,clocks.max.sm"
    try:
        proc = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"], capture_output=True,
                              text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [("nvidia-smi", f"unavailable ({type(exc).__name__})")]
    rows = [line for line in proc.stdout.splitlines() if line.strip()]
    return [(f"gpu {i}", row) for i, row in enumerate(rows)] or [("nvidia-smi", proc.stderr.strip() or "no GPU")]


def environment() -> list[tuple[str, str]]:
    rows = [("python", f"{sys.version.split()[0]} ({sys.executable})"), ("platform", platform.platform()),
            ("cpus", str(os.cpu_count()))]
    rows += [(f"{query} (nvidia-smi: name, driver, memory, compute capability, max SM clock)"
              if query.startswith("gpu") else query, value) for query, value in _nvidia_smi()]
    try:
        import torch

        rows += [("torch", torch.__version__), ("torch CUDA", str(torch.version.cuda)),
                 ("cuDNN", str(torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)),
                 ("CUDA available", str(torch.cuda.is_available()))]
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            rows += [("torch device 0", f"{props.name}, sm_{props.major}{props.minor}, {props.multi_processor_count} "
                                        f"SMs, {props.total_memory / 2**30:.1f} GiB")]
    except Exception as exc:  # the file is written whatever fails
        rows.append(("torch", f"import failed: {type(exc).__name__}: {exc}"))
    rows += [(name, _version(name)) for name in ("timm", "numpy", "triton", "einops", "pytest", "pytest-timeout",
                                                 "scikit-learn", "scikit-image")]
    return rows


if __name__ == "__main__":
    text = "".join(f"{k}: {v}\n" for k, v in environment())
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(text)
    print(text, end="")
