"""A checkpoint's config is data: ``task=eval ckpt=...`` and ``task=vis_recon`` build the model from the
installed config groups and never call a ``_target_`` written in a file (README "Bad input")."""

from __future__ import annotations

import builtins
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import checkpoint
from bench.errors import BenchError
from bench.job import run
from tests.conftest import compose_cfg, fit_isolated

SMOKE = ["profile=smoke", "data.generator.n_train=4", "trainer.epochs=1", "backbone.weights=none"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One finished fit run (and its data and cache) for the module."""
    root = tmp_path_factory.mktemp("ckpt")
    record = fit_isolated(root, SMOKE, "fit")
    assert record["status"] == "completed"
    return root


@pytest.fixture
def paths(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("UNIAD_BENCH_DATA", str(trained / "datasets"))
    monkeypatch.setenv("UNIAD_BENCH_CACHE", str(trained / "cache"))
    return tmp_path


@pytest.fixture
def calls(monkeypatch, tmp_path):
    """Records every call of the functions a hostile checkpoint names, with what it would have touched."""
    seen: list[tuple[str, str]] = []
    marker = str(tmp_path / "payload")

    def spy(name, real):
        def wrapper(*args, **kwargs):
            if any(marker in str(a) for a in (*args, *kwargs.values())):
                seen.append((name, str(args[:1])))
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(np, "load", spy("numpy.load", np.load))
    monkeypatch.setattr(np, "savetxt", spy("numpy.savetxt", np.savetxt))
    monkeypatch.setattr(builtins, "open", spy("builtins.open", builtins.open))
    return seen, marker


HOSTILE = {
    "loss": lambda m: {"_target_": "numpy.load", "file": m, "allow_pickle": True, "name": "mse"},
    "model": lambda m: {"_target_": "numpy.savetxt", "fname": m, "X": [1], "name": "uniad", "input": "features"},
    "backbone": lambda m: {"_target_": "builtins.open", "file": m, "mode": "w", "name": "efficientnet_lite0"},
}


def _hostile_copy(trained: Path, dest: Path, group: str, marker: str, *, choices: bool) -> Path:
    """A copy of the fit run whose checkpoint (and record) carry a hostile node for ``group``."""
    shutil.copytree(trained / "fit", dest)
    state = torch.load(dest / "last.ckpt", weights_only=True)
    state["config"][group] = HOSTILE[group](marker)
    if not choices:
        state.pop("choices", None)
    torch.save(state, dest / "last.ckpt")
    record = json.loads((dest / "metrics.json").read_text())
    record["config"][group] = HOSTILE[group](marker)
    (dest / "metrics.json").write_text(json.dumps(record))
    return dest / "last.ckpt"


@pytest.mark.parametrize("group", sorted(HOSTILE))
@pytest.mark.parametrize("choices", [True, False], ids=["with-choices", "older-without-choices"])
def test_eval_of_a_hostile_checkpoint_calls_nothing_it_names(trained, paths, calls, group, choices):
    seen, marker = calls
    ckpt = _hostile_copy(trained, paths / "evil", group, marker, choices=choices)
    overrides = ["profile=smoke", "data.generator.n_train=4", "task=eval", f"ckpt={ckpt}"]
    with pytest.raises(BenchError) as error:
        run(compose_cfg(overrides), paths / "eval", overrides)
    assert seen == [] and not Path(marker).exists()
    message = str(error.value)
    assert "\n" not in message and str(ckpt) in message and (f"{group}." in message or "installed" in message)


@pytest.mark.parametrize("group", sorted(HOSTILE))
def test_vis_recon_of_a_hostile_run_calls_nothing_it_names(trained, paths, calls, group):
    seen, marker = calls
    _hostile_copy(trained, paths / "evil", group, marker, choices=False)
    from bench.visualize import _load_run

    with pytest.raises(BenchError, match=f"{group}\\.") as error:
        _load_run(str(paths / "evil"), compose_cfg(SMOKE), torch.device("cpu"))
    assert seen == [] and not Path(marker).exists() and "\n" not in str(error.value)


def test_a_checkpoint_of_the_installed_groups_is_rebuilt_and_evaluates_alike(trained, paths):
    ckpt = trained / "fit" / "last.ckpt"
    state = torch.load(ckpt, weights_only=True)
    assert state["choices"]["model"] == "uniad" and state["device"] == "cpu"
    overrides = ["profile=smoke", "data.generator.n_train=4", "task=eval", f"ckpt={ckpt}"]
    evaluated = run(compose_cfg(overrides), paths / "eval", overrides)
    fitted = json.loads((trained / "fit" / "metrics.json").read_text())
    assert evaluated["metrics"] == fitted["metrics"] and evaluated["choices"]["model"] == "uniad"


@pytest.mark.parametrize(("path", "value", "reason"), [
    ("model.hidden_dim", {"_target_": "os.system", "command": "true"}, "model.hidden_dim.command is not a key"),
    ("model.decoder", "${oc.env:HOME}", "not plain"),
    ("model.payload", 3, "model.payload is not a key of conf/model/uniad.yaml"),
])
def test_values_that_are_not_plain_or_unknown_keys_are_refused(path, value, reason):
    saved = json.loads(json.dumps(checkpoint_config()))
    group, key = path.split(".")
    saved[group][key] = value
    with pytest.raises(BenchError, match=reason):
        checkpoint.model_config(compose_cfg(["profile=smoke"]), saved, {"model": "uniad"}, given=[], source="x.ckpt")


@pytest.mark.parametrize("source", ["local-dir:/tmp/anywhere", "hf-hub:someone/weights", "resnet18"])
def test_a_checkpoint_never_decides_where_the_backbone_comes_from(source):
    """``backbone.timm_name`` is compared with the installed option's, never copied: a checkpoint naming
    ``local-dir:``/``hf-hub:`` (or any other network) is refused with the name shown."""
    saved = json.loads(json.dumps(checkpoint_config()))
    saved["backbone"]["timm_name"] = source
    shown = f"backbone.timm_name is '{source}' where conf/ builds 'tf_efficientnet_lite0'"
    with pytest.raises(BenchError, match=shown):
        checkpoint.model_config(compose_cfg(["profile=smoke"]), saved, {"backbone": "efficientnet_lite0"}, given=[],
                                source="x.ckpt")
    saved["backbone"]["timm_name"] = "tf_efficientnet_lite0"
    cfg, _ = checkpoint.model_config(compose_cfg(["profile=smoke"]), saved, {"backbone": "efficientnet_lite0"},
                                     given=[], source="x.ckpt")
    assert cfg.backbone.timm_name == "tf_efficientnet_lite0"


def test_a_choice_that_is_not_an_installed_option_is_refused():
    with pytest.raises(BenchError, match="is not an installed option"):
        checkpoint.model_config(compose_cfg(["profile=smoke"]), checkpoint_config(),
                                {"model": "../../tmp/evil"}, given=[], source="x.ckpt")


def checkpoint_config() -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(compose_cfg(["profile=smoke"]), resolve=True)


def test_an_eval_record_carries_the_checkpoints_training_seed(trained, paths):
    """Two evaluations of one checkpoint are one replicate: the record's seed is the model's, not the job's."""
    fitted = json.loads((trained / "fit" / "metrics.json").read_text())
    seed = fitted["seed"] + 5
    overrides = ["profile=smoke", "data.generator.n_train=4", "task=eval", f"ckpt={trained / 'fit'}", f"seed={seed}"]
    evaluated = run(compose_cfg(overrides), paths / "eval", overrides)
    assert evaluated["status"] == "completed"
    assert evaluated["seed"] == evaluated["config"]["seed"] == fitted["seed"] != seed
    assert evaluated["metrics"] == fitted["metrics"]
