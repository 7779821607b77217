"""``<run dir>/job.log``: the job's console output kept beside its record.

Hydra's job logging already writes there (``conf/config.yaml``: ``hydra.job_logging``); ``teed`` adds
what the job prints, and ``log_only`` writes what belongs in the log but not on the console (a sweep
job's metrics tables). Progress-bar frames (``\\r`` updates) stay on the console.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TextIO

LOG = "job.log"


class _Tee:
    def __init__(self, console: TextIO, log: TextIO) -> None:
        self.console, self.log = console, log

    def write(self, text: str) -> int:
        self.console.write(text)
        if "\r" not in text:
            with contextlib.suppress(OSError, ValueError):
                self.log.write(text)
        return len(text)

    def flush(self) -> None:
        self.console.flush()
        with contextlib.suppress(OSError, ValueError):
            self.log.flush()

    def __getattr__(self, name):  # isatty, encoding, fileno: the console's
        return getattr(self.console, name)


_log: TextIO | None = None


@contextlib.contextmanager
def teed(run_dir: Path):
    """Within: ``sys.stdout`` and ``sys.stderr`` also append to ``<run_dir>/job.log``."""
    global _log
    out, err = sys.stdout, sys.stderr
    try:
        log = open(Path(run_dir) / LOG, "a", buffering=1)  # noqa: SIM115  (closed below)
    except OSError:  # a log that cannot be opened must not stop the job
        yield
        return
    _log, sys.stdout, sys.stderr = log, _Tee(out, log), _Tee(err, log)
    try:
        yield
    finally:
        sys.stdout, sys.stderr, _log = out, err, None
        log.close()


def log_only(text: str) -> None:
    """Append ``text`` (one line or more) to the job's log, not the console."""
    if _log is not None:
        with contextlib.suppress(OSError, ValueError):
            _log.write(text.rstrip("\n") + "\n")


def quiet_console() -> None:
    """Only warnings and errors of the logging on the console (a sweep's console is its ``job k/N`` lines; the
    rest is in each job's log)."""
    import logging

    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # not a FileHandler (a subclass)
            handler.setLevel(logging.WARNING)
