"""The run record: the one contract between the job that writes ``<run dir>/metrics.json`` (``bench``)
and everything that reads it (``reports``, resuming, skipping completed runs, ``task=eval``).

Torch-free and pandas-free, so a job and a report load it alike. A module per part:
:mod:`record.files` (the run dir's file names), :mod:`record.keys` (which config keys change no number;
configs as dotted keys), :mod:`record.parts` (the record a job writes: typed parts, started / completed /
failed), :mod:`record.parse` (a record read back and checked: ``parse_record``, ``RecordError``),
:mod:`record.store` (reading and writing the file), :mod:`record.atomic` (atomic writes).
"""

from record.atomic import remove_stale_temps, write_atomic, write_json_atomic, write_text_atomic
from record.files import CKPT, CURVE, MAPS, RECORD
from record.keys import (
    NAMING_KEYS,
    NEUTRAL,
    PURPOSES,
    config_diff,
    config_value,
    flatten,
    is_neutral,
    neutral_for,
    shown_keys,
)
from record.parse import SCHEMA_VERSION, Curve, CurvePoint, Metrics, Record, RecordError, parse_record
from record.parts import CacheUse, CheckpointUse, DataSummary, RunRecord, started
from record.store import load_record, read_record_file, read_run_record, record_path, write_record

__all__ = [
    "CKPT", "CURVE", "MAPS", "NAMING_KEYS", "NEUTRAL", "PURPOSES", "RECORD", "SCHEMA_VERSION", "CacheUse",
    "CheckpointUse", "Curve", "CurvePoint", "DataSummary", "Metrics", "Record", "RecordError", "RunRecord",
    "config_diff", "config_value", "flatten", "is_neutral", "load_record", "neutral_for", "parse_record",
    "read_record_file", "read_run_record", "record_path", "remove_stale_temps", "shown_keys", "started",
    "write_atomic", "write_json_atomic", "write_record", "write_text_atomic",
]
