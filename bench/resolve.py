"""A job's config resolved once: ``resolve_job`` → ``Job``, what every stage of ``bench.job`` receives.

The steps, in order (a failure stops at its step; ``Unresolved`` keeps what was resolved before it, so
the failed record still holds the config, the choices and the device): the config resolved to a plain
dict (what the record and each checkpoint store), the config-group choices, the task and the values
checked (``bench.validate``), the device, and for ``task=eval`` the checkpoint ``ckpt`` with the model
rebuilt from it (``checkpoint.model_config``: the record then holds the checkpoint's model and choices,
and the checkpoint's training ``seed``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from bench import checkpoint, groups
from bench.errors import BenchError
from bench.validate import validate_config

TASKS = ("fit", "eval", "predict", "complexity", "train_vis_decoder", "vis_recon")
FROM_CHECKPOINT = ("eval", "predict")  # tasks whose model is the checkpoint's


@dataclass(frozen=True)
class Job:
    """One job, resolved. ``cfg``: the composed config (task=eval: with the checkpoint's model);
    ``config``: ``cfg`` resolved to plain values; ``state``: task=eval's loaded checkpoint."""

    cfg: DictConfig
    config: dict
    choices: dict
    overrides: tuple[str, ...]
    device: torch.device
    run_dir: Path
    state: dict | None = None

    @property
    def task(self) -> str:
        return str(self.cfg.task)


class Unresolved(Exception):
    """``cause`` stopped the resolution at ``stage`` (``config``: it does not resolve; ``check``: the task,
    the values or the device; ``checkpoint``: task=eval's model); ``config`` (resolved, or as composed
    when it does not resolve), ``choices`` and ``device`` (None until picked) are what was known by then."""

    def __init__(self, cause: Exception, stage: str, config: dict, choices: dict, device: torch.device | None):
        super().__init__(str(cause))
        self.cause, self.stage, self.config, self.choices, self.device = cause, stage, config, choices, device


def pick_device(name: str) -> torch.device:
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_job(cfg: DictConfig, run_dir: Path, overrides: list[str], choices: dict | None) -> Job:
    """``cfg`` resolved once (see the module's docstring); raises ``Unresolved``."""
    known = dict(choices) if choices is not None else {}
    try:
        config = OmegaConf.to_container(cfg, resolve=True)
    except Exception as exc:
        raise Unresolved(exc, "config", OmegaConf.to_container(cfg, resolve=False), known, None) from exc
    if choices is None:  # run without Hydra (tests): the model groups' options from the values naming them
        known = groups.infer_choices(config)
    device, state = None, None
    try:
        if cfg.task not in TASKS:
            raise BenchError(f"task={cfg.task} is unknown; choose one of {', '.join(TASKS)}")
        validate_config(cfg)
        if cfg.task == "predict":  # a missing or empty folder stops the job before the checkpoint is read
            from bench.predict import find_images

            find_images(cfg.predict.input)
        device = pick_device(cfg.trainer.device)
    except Exception as exc:
        raise Unresolved(exc, "check", config, known, device) from exc
    if cfg.task in FROM_CHECKPOINT:  # the model comes from the checkpoint: its group choices and plain values
        try:
            cfg, state, model_choices = _checkpoint_model(cfg, config, overrides)
            config, known = OmegaConf.to_container(cfg, resolve=True), {**known, **model_choices}
        except Exception as exc:
            raise Unresolved(exc, "checkpoint", config, known, device) from exc
    return Job(cfg=cfg, config=config, choices=known, overrides=tuple(overrides), device=device,
               run_dir=Path(run_dir), state=state)


def _checkpoint_model(cfg: DictConfig, config: dict, overrides: list[str]) -> tuple[DictConfig, dict, dict]:
    """task=eval: ``(cfg with the model of checkpoint ckpt, the checkpoint, the model groups' choices)``."""
    if not cfg.ckpt:
        raise BenchError(f"task={cfg.task} needs ckpt=PATH (a {checkpoint.CKPT} written by a fit job, or its run dir)")
    state = checkpoint.load(checkpoint.given_path(cfg.ckpt), own=False)
    model_cfg, choices = checkpoint.model_config(cfg, state.get("config"), state.get("choices"), given=overrides,
                                                 source=cfg.ckpt, resolved=config)
    trained = state["config"].get("seed")
    if isinstance(trained, int) and not isinstance(trained, bool):  # the model's seed, not this job's: two
        model_cfg.seed = trained  # evaluations of one checkpoint are one replicate, recorded under its seed
    return model_cfg, state, choices
