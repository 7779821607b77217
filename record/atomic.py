"""Atomic file writes shared by records, curves and checkpoints.

A file is written to a hidden temp name in its folder (``.<name>.<random>``), then renamed over the
target, so a reader never sees half a file. The temp file gets the mode a plain ``open()`` would give
(0666 less the umask), not ``mkstemp``'s owner-only 0600: a colleague sharing a sweep dir or a cache
reads records, checkpoints and cache files alike. A write that fails removes its temp file; the temp
files a killed job left behind are removed by ``remove_stale_temps``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def file_mode() -> int:
    """0666 less the process's umask (what ``open(path, "w")`` creates)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def temp_prefix(path: Path) -> str:
    return f".{Path(path).name}."


def write_atomic(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """``write(temp_path)`` fills a temp file beside ``path``, which is then renamed to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, file_mode())
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def write_json_atomic(path: str | os.PathLike, payload: dict) -> None:
    """``payload`` as indented JSON (keys in their order; values JSON cannot hold written as strings)."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False, default=str) + "\n")


def remove_stale_temps(folder: str | os.PathLike, names: list[str], older_than_s: float = 0.0) -> list[Path]:
    """Remove the temp files of interrupted writes of ``names`` in ``folder`` (``.<name>.*``) that are older
    than ``older_than_s`` seconds (0: all of them, for a folder only this process writes to); return them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed, now = [], time.time()
    for name in names:
        for tmp in folder.glob(f"{temp_prefix(Path(name))}*"):
            try:
                if tmp.is_file() and now - tmp.stat().st_mtime >= older_than_s:
                    tmp.unlink()
                    removed.append(tmp)
            except OSError:
                continue
    return removed
