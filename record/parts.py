"""Writing a run record: its typed parts and the states a job moves it through.

A job builds one ``RunRecord`` with ``started`` (status ``running``), fills its parts as the stages
produce them, and ends it with ``completed()`` or ``failed(error)``; ``to_json()`` is what
``metrics.json`` holds (``record.store.write_record`` writes it). The keys come in a fixed order: the
identity and config first, then the parts a job may add (checkpoint, data, cache, curve, outputs) and
the error last. ``metrics``, ``complexity``, ``timing``, ``env`` and ``curve`` hold what the stages
return (``parse_record`` reads them back typed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from record.parse import SCHEMA_VERSION

NOT_YET: Any = type("NotYet", (), {"__repr__": lambda self: "NOT_YET"})()  # a part not reached (yet)


@dataclass
class DataSummary:
    """The images a job read: training and test counts and the test set's categories."""

    train_images: int
    test_images: int
    categories: list[str]


@dataclass
class CacheUse:
    """The feature cache: whether it was used, whether the training features were found, their key and
    the test features' key."""

    used: bool
    hit: bool | None
    key: str | None
    test_key: Any = NOT_YET  # str or None once the test features were looked up

    def to_json(self) -> dict:
        out = {"used": self.used, "hit": self.hit, "key": self.key}
        if self.test_key is not NOT_YET:
            out["test_key"] = self.test_key
        return out


@dataclass
class CheckpointUse:
    """task=eval: the checkpoint the model came from and the epoch it was saved at."""

    path: str
    epoch: int | None


@dataclass
class RunRecord:
    """A run record being written (``parse_record`` reads it back as a ``Record``)."""

    task: Any
    experiment: Any
    overrides: list[str]
    choices: dict[str, str | None]
    seed: Any
    run_dir: str
    config: dict | None = None
    status: str = "running"
    metrics: dict | None = None
    complexity: dict | None = None
    timing: dict[str, Any] = field(default_factory=dict)
    env: dict | None = None
    checkpoint: CheckpointUse | None = None
    data: DataSummary | None = None
    cache: CacheUse | None = None
    curve: dict | None = None
    outputs: dict | None = None
    error: str | None = None
    schema: int = SCHEMA_VERSION

    def completed(self) -> RunRecord:
        self.status = "completed"
        return self

    def failed(self, error: str) -> RunRecord:
        """Failed with ``error``: one line, ``Type: message`` of the root cause."""
        self.status, self.error = "failed", error
        return self

    def to_json(self) -> dict:
        out: dict[str, Any] = {
            "schema": self.schema, "status": self.status, "task": self.task, "experiment": self.experiment,
            "overrides": list(self.overrides), "choices": dict(self.choices), "seed": self.seed,
            "config": self.config, "metrics": self.metrics, "complexity": self.complexity, "timing": self.timing,
            "env": self.env, "run_dir": self.run_dir,
        }
        if self.checkpoint is not None:
            out["checkpoint"] = asdict(self.checkpoint)
        if self.data is not None:
            out["data"] = asdict(self.data)
        if self.cache is not None:
            out["cache"] = self.cache.to_json()
        for key in ("curve", "outputs", "error"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def started(*, task, experiment, overrides: list[str], choices: dict, seed, run_dir: str,
            config: dict | None) -> RunRecord:
    """The record of a job that has started (status ``running``)."""
    return RunRecord(task=task, experiment=experiment, overrides=list(overrides), choices=dict(choices), seed=seed,
                     run_dir=str(run_dir), config=config)


def skipped(previous: dict) -> dict:
    """A completed record handed back again instead of recomputing it (``skipped: true``; not written)."""
    return {**previous, "skipped": True}


def locked(owner: dict | None, run_dir: str) -> dict:
    """What a job returns, writing nothing, when another live job holds the run dir."""
    return {"status": "skipped", "skipped": True, "locked_by": owner, "run_dir": str(run_dir)}
