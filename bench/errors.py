"""Errors that end a job with a one-line message (no traceback needed to act on them)."""


class BenchError(RuntimeError):
    """A user-facing problem: the message names the thing and what to do."""


class RunDirRefused(BenchError):
    """A run dir holds a completed record of another config: the job stops and leaves it as it is (a sweep
    reports the cell as refused, neither completed nor failed)."""


def one_line(exc: BaseException) -> str:
    """``Type: first line`` of the root cause (Hydra wraps constructor errors in InstantiationException)."""
    while exc.__cause__ is not None and type(exc).__name__ == "InstantiationException":
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
