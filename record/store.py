"""Reading and writing a run dir's record file (``record.files.RECORD``) through the contract.

Writing is atomic (``record.atomic``: a reader never sees half a record). Every reader goes through
``load_record`` (the JSON object, or ``ValueError`` with a one-line reason: not JSON, not an object,
nested too deep to parse) and ``parse_record`` (``record.parse``: the contract's checks).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from record.atomic import write_json_atomic
from record.files import RECORD
from record.parse import MAX_DEPTH, Record, RecordError, parse_record


def record_path(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / RECORD


def load_record(path: str | os.PathLike) -> dict:
    """The parsed JSON object of a record file; raises ``ValueError`` with a one-line reason when the file
    cannot be read, is not JSON or not an object."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except RecursionError:
        raise RecordError(f"nested deeper than {MAX_DEPTH} levels: not a run record") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object but {type(record).__name__}")
    return record


def read_record_file(path: str | os.PathLike) -> Record:
    """The record in ``path``, checked; ``ValueError`` (``RecordError`` when it breaks the contract)."""
    return parse_record(load_record(path))


def read_run_record(run_dir: str | os.PathLike) -> Record | None:
    """The record of ``run_dir``; None when there is none, or it cannot be read or breaks the contract
    (a job treats such a run dir as not completed)."""
    path = record_path(run_dir)
    if not path.is_file():
        return None
    try:
        return read_record_file(path)
    except ValueError:
        return None


def write_record(run_dir: str | os.PathLike, record: dict) -> Path:
    """Write ``record`` (a JSON object: ``RunRecord.to_json()``) as ``run_dir``'s record; return its path.
    An ``OSError`` (disk full) propagates and leaves no temp file."""
    path = record_path(run_dir)
    write_json_atomic(path, record)
    return path
