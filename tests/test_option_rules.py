"""An option (a dataset reader, a method) declares the ranges of its own keys beside its class; the job
checks them before it builds or trains anything. A new option is two files: its module and its YAML."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

import bench.job
from bench.errors import BenchError
from bench.job import run
from bench.validate import JOB_RULES, checked_rules, validate_config
from rules import INT, ONE_OF, REAL, declared_rules
from tests.conftest import compose_cfg

READER = '''
from data.mvtec import MVTecDataset
from rules import REAL


class ScratchReader(MVTecDataset):
    RULES = {"blur": REAL(0, 1)}

    def __init__(self, root, split, categories=None, image_size=224, blur=0.0):
        raise AssertionError("the reader was built")
'''
READER_YAML = '''
_target_: scratch_reader.ScratchReader
name: scratch
root: ${paths.data_root}/scratch
categories: null
image_size: 224
outlayers: [1, 2, 3, 4]
score: max
blur: 0.5
'''
METHOD = '''
from torch import nn

from rules import INT


class ScratchMethod(nn.Module):
    RULES = {"rank": INT(1, 64)}

    def __init__(self, in_channels, feature_size, rank=8):
        raise AssertionError("the method was built")
'''
METHOD_YAML = '''
_target_: scratch_method.ScratchMethod
name: scratch
input: features
rank: 8
'''


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """Two files per option, outside the repository: ``<tmp>/scratch_*.py`` on ``sys.path`` and
    ``<tmp>/conf/{data,model}/scratch.yaml`` on Hydra's search path; returns that search-path override."""
    (tmp_path / "conf" / "data").mkdir(parents=True)
    (tmp_path / "conf" / "model").mkdir()
    (tmp_path / "scratch_reader.py").write_text(textwrap.dedent(READER))
    (tmp_path / "scratch_method.py").write_text(textwrap.dedent(METHOD))
    (tmp_path / "conf" / "data" / "scratch.yaml").write_text(READER_YAML)
    (tmp_path / "conf" / "model" / "scratch.yaml").write_text(METHOD_YAML)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("UNIAD_BENCH_DATA", str(tmp_path / "datasets"))
    monkeypatch.setenv("UNIAD_BENCH_CACHE", str(tmp_path / "cache"))
    yield f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    for name in ("scratch_reader", "scratch_method"):
        sys.modules.pop(name, None)


@pytest.fixture
def never_trains(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("training started")

    monkeypatch.setattr(bench.job, "fit", fail)
    monkeypatch.setattr(bench.job, "build_detector", fail)
    monkeypatch.setattr(bench.job, "build_datasets", fail)


@pytest.mark.parametrize(("option", "bad", "allowed"), [
    ("data=scratch", "data.blur=1.5", "a number in [0, 1]"),
    ("model=scratch", "model.rank=0", "an integer in [1, 64]"),
])
def test_a_new_options_bad_value_stops_the_job_before_training(tmp_path, scratch, never_trains, option, bad,
                                                                allowed):
    overrides = ["profile=smoke", scratch, option]
    validate_config(compose_cfg(overrides))  # its shipped value passes, nothing built
    with pytest.raises(BenchError) as error:
        run(compose_cfg([*overrides, bad]), tmp_path / "run")
    message = str(error.value)
    assert message.startswith(bad) and allowed in message and "give" in message and "\n" not in message
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["status"] == "failed" and record["error"].endswith(message)
    assert record["metrics"] is None


def test_an_unimportable_target_is_named_before_anything_is_built(scratch):
    with pytest.raises(BenchError, match=r"^model\._target_=scratch_method\.Missing cannot be imported"):
        validate_config(compose_cfg(["profile=smoke", scratch, "model=scratch",
                                     "model._target_=scratch_method.Missing"]))


def test_a_subclass_adds_to_and_overrides_its_bases_rules():
    class Base:
        RULES = {"size": INT(32), "score": ONE_OF("max", "mean")}

    class Child(Base):
        RULES = {"size": INT(64), "jitter": REAL(0, 1)}

    assert declared_rules(Child) == {"size": INT(64), "score": ONE_OF("max", "mean"), "jitter": REAL(0, 1)}
    from data.reader import FolderBenchmark, ReaderDataset
    from data.visa import VisADataset

    assert declared_rules(VisADataset)["image_size"] is ReaderDataset.RULES["image_size"]
    assert set(declared_rules(FolderBenchmark)) == {"image_size", "categories", "follow_links", "resize", "outlayers",
                                                      "strict_counts"}


def test_the_job_names_none_of_an_options_keys():
    """Every top-level node with a ``_target_`` is an option: its keys' rules live beside its class."""
    cfg = compose_cfg(["profile=smoke"])
    options = {group for group, node in cfg.items_ex(resolve=False) if hasattr(node, "keys") and "_target_" in node}
    assert {"data", "model", "backbone", "loss", "logger"} <= options
    assert not {key.split(".")[0] for key in JOB_RULES} & options


@pytest.mark.parametrize(("overrides", "key", "source"), [
    (["data.outlayers=[0,1]"], "backbone.outlayers", "data.outlayers"),
    (["decoder.design=lqd_z"], "model.decoder", "decoder.design"),
    (["data.score=median"], "eval.score", "data.score"),
])
def test_a_value_read_through_an_interpolation_is_named_by_the_key_the_user_sets(overrides, key, source):
    cfg = compose_cfg(["profile=smoke", *overrides])
    assert (key, source) in {check[:2] for check in checked_rules(cfg)}
    with pytest.raises(BenchError, match=f"^{source}="):
        validate_config(cfg)
