"""Shared fixtures: the real config tree, composed and shrunk for CPU tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import bench  # noqa: F401  (registers resolvers)

ROOT = Path(__file__).resolve().parent.parent
CONF = str(ROOT / "conf")
SHARED = ROOT.parent / "shared"


def compose_cfg(overrides: list[str] | None = None, *, hydra: bool = False):
    """The composed config; ``hydra=True`` keeps its ``hydra`` node (``runtime.choices``)."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("config", overrides=list(overrides or []), return_hydra_config=hydra)


def fit_isolated(root: Path, overrides: list[str], name: str, data: str = "datasets") -> dict:
    """Run one job in ``root/name`` with its data and feature cache under ``root`` (for module-scoped
    fixtures, where ``monkeypatch`` is not available); returns its record."""
    from bench.job import run

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNIAD_BENCH_DATA", str(root / data))
        mp.setenv("UNIAD_BENCH_CACHE", str(root / "cache"))
        return run(compose_cfg(overrides), root / name)


@pytest.fixture
def tmp_paths(tmp_path, monkeypatch):
    """Data and feature-cache roots inside the test's temp dir."""
    monkeypatch.setenv("UNIAD_BENCH_DATA", str(tmp_path / "datasets"))
    monkeypatch.setenv("UNIAD_BENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path
