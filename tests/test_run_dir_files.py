"""The files a job leaves in its run dir: readable as the cache is (the umask's mode, not 0600), and no
temp file of an interrupted write outlives the next job in that dir."""

from __future__ import annotations

import os

import pytest

from bench.job import run
from tests.conftest import compose_cfg

SMOKE = ["profile=smoke", "data.generator.n_train=4", "trainer.epochs=1", "backbone.weights=none"]


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_record_and_checkpoint_honour_the_umask_and_stale_temps_are_removed(tmp_paths, umask_022):
    run_dir = tmp_paths / "r"
    run_dir.mkdir()
    stale = [run_dir / ".metrics.json.k1ll3d", run_dir / ".last.ckpt.dead1234"]  # a job killed mid-write
    for path in stale:
        path.write_bytes(b"\x00" * 64)
    assert run(compose_cfg(SMOKE), run_dir)["status"] == "completed"
    assert not any(p.exists() for p in stale)
    for name in ("metrics.json", "last.ckpt"):
        assert (run_dir / name).stat().st_mode & 0o777 == 0o644, name
    assert not [p for p in run_dir.iterdir() if p.name.startswith((".metrics.json.", ".last.ckpt."))]
