"""Checkpoints: learnable state, optimizer, scheduler, epoch, RNG state and the resolved config.

Stored as plain tensors and containers and loaded with ``weights_only=True`` (the config is a plain
dict from ``OmegaConf.to_container``). The config makes a checkpoint self-describing: a resume under a
config that changes results is refused (``check_resume``) and ``task=eval`` rebuilds the model from it
(``model_config``). Which keys "change results" is decided once, in ``record.keys.NEUTRAL``.
"""

from __future__ import annotations

import errno
import logging
import random
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from bench import groups
from bench.errors import BenchError
from record.atomic import write_atomic
from record.files import CKPT
from record.keys import config_diff, shown_keys, with_device

log = logging.getLogger(__name__)

__all__ = ["CKPT", "check_resume", "load", "load_detector_state", "model_config", "save", "with_device"]


def rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def learnable_state(detector) -> dict:
    """The detector's state without a frozen backbone (it is rebuilt from its weights)."""
    frozen = detector.frozen_target
    return {k: v for k, v in detector.state_dict().items() if not (frozen and k.startswith("backbone."))}


def save(path: Path, **payload) -> None:
    """Write ``payload`` atomically (``record.atomic``: temp file, rename, the umask's mode); on any error (disk
    full included) the temp file is removed before the error propagates, so the space it took is free for
    the failed job's record."""
    path = Path(path)
    try:
        write_atomic(path, lambda tmp: torch.save(payload, tmp))
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on the device to write checkpoint {path}") from exc
        raise


def given_path(ckpt) -> Path:
    """The checkpoint a ``ckpt=`` names: a file, or a run dir holding ``last.ckpt``."""
    path = Path(str(ckpt)).expanduser()
    return path / CKPT if path.is_dir() else path


def load(path: Path, *, own: bool = True) -> dict:
    """Load a checkpoint. ``own``: the run's own ``last.ckpt`` (an unreadable one may be deleted to start
    over); False for a path the user gave (``task=eval ckpt=...``), which is only named."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BenchError(f"checkpoint {path} does not exist: check ckpt=") from None
    except Exception as exc:
        if own:
            raise BenchError(
                f"checkpoint {path} cannot be read ({type(exc).__name__}): delete it (or pass rerun=true) "
                "to start this job over"
            ) from exc
        raise BenchError(
            f"checkpoint {path} cannot be read ({type(exc).__name__}): is it a last.ckpt written by a fit job?"
        ) from exc
    if not isinstance(state, dict) or "model" not in state:
        raise BenchError(f"checkpoint {path} holds no model state: is it a last.ckpt written by a fit job?")
    return state


def check_resume(state: dict, config: dict | None, path, device_type: str | None = None) -> None:
    """Refuse to resume from ``state`` when its config differs from ``config`` in a key that changes
    results (``record.keys.NEUTRAL``; the device compared as the type each ran on), or when its
    weights are not finite (a run that diverged must not be resumed forever)."""
    saved = state.get("config")
    if config is not None and saved is None:
        raise BenchError(f"checkpoint {path} does not record its config, so resuming it under this one cannot be "
                         "checked: pass rerun=true to start over (the old files are kept in .previous/)")
    if config is not None:
        if state.get("device") is not None:  # checkpoints before the device was stored compare the setting
            saved, config = with_device(saved, state["device"]), with_device(config, device_type)
        diff = config_diff(saved, config, "resume")
        if diff:
            raise BenchError(f"checkpoint {path} was made with another config ({shown_keys(diff)}): pass rerun=true "
                             "to start over (the old files are kept in .previous/), or use a new run dir")
    bad = [k for k, v in state["model"].items() if torch.is_tensor(v) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise BenchError(f"checkpoint {path} holds non-finite weights ({bad[0]}): pass rerun=true to start over")


def assert_finite(detector, epoch: int) -> None:
    """Raise ``FloatingPointError`` when a learnable parameter is NaN/inf (checked before a checkpoint)."""
    for name, p in detector.named_parameters():
        if p.requires_grad and not bool(torch.isfinite(p).all()):
            raise FloatingPointError(f"parameter {name} became non-finite in epoch {epoch}: lower trainer.lr or "
                                     "check the data (no checkpoint was written)")


def load_detector_state(detector, state: dict, path) -> None:
    missing, unexpected = detector.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise BenchError(f"checkpoint {path} does not match this model ({example}); was it made with another config?")


# ----------------------------------------------------------------------------------- the model of a checkpoint
# What makes the model a function: task=eval and vis_recon rebuild it with the checkpoint's values of these.
ARCHITECTURE_KEYS = ("model", "decoder", "arch", "loss", "backbone", "data.image_size", "data.outlayers")
# keys that make Hydra call something, or say where code and weights come from (timm reads a
# ``timm_name`` of ``hf-hub:owner/repo`` or ``local-dir:<folder>`` as a place to load from): never taken
# from a file, only compared with what conf/ builds
EXECUTABLE_KEYS = frozenset({"_target_", "_partial_", "_args_", "_recursive_", "_convert_", "timm_name"})
_ABSENT = object()


def _leaves(node, path: str):
    """``(dotted path, value)`` of every leaf under ``node`` (lists are leaves)."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}")
    else:
        yield path, node


def _plain(value) -> bool:
    """A value a checkpoint may contribute: a scalar, or a list of them (sizes, flags, names)."""
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    if isinstance(value, str):
        return "${" not in value  # an interpolation would be resolved (resolvers run code)
    return value is None or isinstance(value, bool | int | float)


def _select(config: dict, path: str):
    node = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return _ABSENT
        node = node[part]
    return node


def _architecture_leaves(config: dict):
    """``(dotted path, value)`` of every leaf under the architecture keys of a config."""
    for prefix in ARCHITECTURE_KEYS:
        node = _select(config, prefix)
        if node is not _ABSENT:
            yield from _leaves(node, prefix)


def _executable(path: str) -> bool:
    return path.rsplit(".", 1)[-1] in EXECUTABLE_KEYS


def _executables(config: dict) -> dict[str, object]:
    """``{dotted path: value}`` of the executable keys under the architecture keys of a resolved config."""
    return {path: value for path, value in _architecture_leaves(config) if _executable(path)}


def _conflicts(saved: dict, current: dict, given: list[str]) -> list[str]:
    """Architecture keys that differ between the checkpoint and the job because the command line set them."""
    diff = config_diff(saved, current, "skip", only=ARCHITECTURE_KEYS)
    keys = [o.split("=", 1)[0].lstrip("+~") for o in given if "=" in o]
    # a profile given on the command line conflicts when it is not the checkpoint's (it sets the sizes)
    other_profile = "profile" in keys and saved.get("profile_name") != current.get("profile_name")
    return [k for k in diff if other_profile or any(k == g or k.startswith(g + ".") or g.startswith(k + ".")
                                                    for g in keys)]


def model_config(cfg: DictConfig, saved, saved_choices, *, given: list[str], source,
                 resolved: dict | None = None) -> tuple[DictConfig, dict]:
    """``cfg`` with the model of a checkpoint: ``(config, the model groups' choices)``.

    A checkpoint's config is data, never code: the model's nodes are composed from this installation's
    config groups (``conf/model``, ``decoder``, ``loss``, ``backbone``) as the checkpoint's recorded group
    choices say (checkpoints without choices: the options their ``model.name``, ``decoder.design``,
    ``loss.name`` and ``backbone.name`` name), then the checkpoint's plain values (sizes, flags, names)
    are set on them. Refused, in one line and before anything is built: a choice that names no installed
    option, a key the installed option does not have, a value that is not plain, and any ``_target_``
    (or other instantiation key) that differs from what ``conf/`` builds. The data, evaluation and device
    stay the job's; an architecture key the command line set (``given``) and the checkpoint contradicts is
    a conflict. ``resolved``: ``cfg`` resolved (``bench.resolve`` resolves a job's config once), else
    resolved here.
    """
    if not isinstance(saved, dict):
        raise BenchError(f"checkpoint {source} does not record its config, so its model cannot be rebuilt: "
                         "give a checkpoint written by a fit job of this release")
    current = resolved if resolved is not None else OmegaConf.to_container(cfg, resolve=True)
    conflicts = _conflicts(saved, current, given)
    if conflicts:
        raise BenchError(f"checkpoint {source} was trained with another architecture than the command line asks "
                         f"({shown_keys(conflicts)}): drop those overrides (the model is rebuilt from the checkpoint)")
    recorded = saved_choices if isinstance(saved_choices, dict) else {}
    inferred = groups.infer_choices(saved)
    choices = {g: recorded.get(g) or inferred.get(g) for g in groups.MODEL_GROUPS}
    unknown = [g for g, c in choices.items() if not c]
    if unknown:
        raise BenchError(f"checkpoint {source} does not say which {'/'.join(unknown)} it was built with (no recorded "
                         f"choice, no {', '.join(f'{g}.name' for g in unknown)} naming an installed option)")
    tree = OmegaConf.to_container(cfg, resolve=False)
    for group, option in choices.items():
        tree[group] = OmegaConf.to_container(groups.load_option(group, option), resolve=False)
    merged = OmegaConf.create(tree)
    for path, value in _architecture_leaves(saved):
        if _executable(path):
            continue  # compared below, never used
        if not _plain(value):
            raise BenchError(f"checkpoint {source}: {path} holds {type(value).__name__} values, not plain ones")
        if OmegaConf.select(merged, path, default=_ABSENT) is _ABSENT:
            group = path.split(".")[0]
            where = f"conf/{group}/{choices[group]}.yaml" if group in choices else "the config"
            raise BenchError(f"checkpoint {source}: {path} is not a key of {where}; was it written by another "
                             "version of this suite?")
        OmegaConf.update(merged, path, value, merge=False)
    try:
        resolved = OmegaConf.to_container(merged, resolve=True)
    except Exception as exc:
        raise BenchError(f"checkpoint {source}: its model config does not resolve ({exc})".splitlines()[0]) from None
    ours, theirs = _executables(resolved), _executables(saved)
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k, _ABSENT) != theirs.get(k, _ABSENT))
    if differ:
        key = differ[0]
        raise BenchError(f"checkpoint {source}: {key} is {_shown(theirs.get(key, _ABSENT))} where conf/ builds "
                         f"{_shown(ours.get(key, _ABSENT))}; refusing to build it (a checkpoint's config is data)")
    return OmegaConf.create(resolved), choices


def _shown(value) -> str:
    return "absent" if value is _ABSENT else repr(value)[:80]
