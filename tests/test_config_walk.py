"""ops/config_walk.py: the walk counts the suite's functions that receive the config, and whole-config resolutions."""

import sys

from conftest import ROOT, compose_cfg


def test_the_walk_counts_the_functions_that_receive_the_config_and_where_it_is_resolved(tmp_paths, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "ops"))
    from config_walk import Walk

    from bench.resolve import resolve_job

    cfg = compose_cfg(["profile=smoke"])
    hook = Walk()
    sys.setprofile(hook)
    try:
        job = resolve_job(cfg, tmp_paths / "run", [], None)
    finally:
        sys.setprofile(None)
    assert job is not None
    functions = dict.fromkeys(hook.stays)
    assert ("bench/resolve.py", "resolve_job") == next(iter(functions))  # the first stay: the entry called
    assert ("bench/validate.py", "validate_config") in functions
    assert hook.returns == 1  # resolve_job hands back the Job that holds the config
    assert hook.resolutions == ["bench/resolve.py: resolve_job"]  # the whole config resolved once, there
    assert "1 resolutions of the whole config in 1 places" in hook.summary("resolve")
