"""Errors that end a job with a one-line message (no traceback needed to act on them)."""


class BenchError(RuntimeError):
    """A user-facing problem: the message names the thing and what to do."""
