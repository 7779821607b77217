"""The one error type of ``data/``: a bad dataset on disk, reported in one actionable line."""


class DatasetError(Exception):
    """A dataset file or folder is missing or malformed.

    The message is one line that names the offending path and says what to do, so a job can stop
    before training with nothing more than ``str(error)``.
    """
