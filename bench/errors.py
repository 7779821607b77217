"""Errors that end a job with a one-line message (no traceback needed to act on them)."""


class BenchError(RuntimeError):
    """A user-facing problem: the message names the thing and what to do."""


class RunDirRefused(BenchError):
    """A run dir holds a completed record of another config: the job stops and leaves it as it is (a sweep
    reports the cell as refused, neither completed nor failed)."""
