"""The official UniAD reconstruction (a zhiyuanyou/UniAD checkout) as a detector ``bench.fit`` can train.

For comparison only (``bench.tools.perf``, ``bench.tools.gpu_check``): the checkout's
``models/reconstructions/uniad.py`` is imported by file path, never copied, with the real ``einops``
(``pip install -e .[perf]``). ``OfficialDetector`` exposes the four steps of ``models.detector`` so the
official model runs through the same train step as ours (``bench.fit.make_train_step``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch import nn

from bench.build import feature_size
from bench.errors import BenchError

OFFICIAL_FILE = Path("models") / "reconstructions" / "uniad.py"
# experiments/MVTec-AD/config.yaml of the official code; the sizes come from cfg.arch
# (equal to these at profile=paper) so both models have the same shape.
OFFICIAL_CONFIG = {
    "pos_embed_type": "learned", "save_recon": False, "initializer": {"method": "xavier_uniform"},
    "hidden_dim": 256, "nhead": 8, "num_encoder_layers": 4, "num_decoder_layers": 4, "dim_feedforward": 1024,
    "dropout": 0.1, "activation": "relu", "normalize_before": False,
}


def official_file(path: str | os.PathLike) -> Path | None:
    """``models/reconstructions/uniad.py`` of a checkout (or the file itself), or None when absent."""
    path = Path(path).expanduser()
    candidates = [path] if path.suffix == ".py" else [path / OFFICIAL_FILE, path / "UniAD" / OFFICIAL_FILE]
    return next((p.resolve() for p in candidates if p.is_file()), None)


def load_official(path: str | os.PathLike) -> ModuleType:
    """Import the official reconstruction module by file path, without copying any of it.

    Its ``from models.initializer import ...`` must see the checkout's ``models`` package, which clashes
    with ours: our ``models*`` modules are set aside while it imports and put back afterwards.
    """
    file = official_file(path)
    if file is None:
        raise BenchError(f"no {OFFICIAL_FILE} under {path}: give a checkout of zhiyuanyou/UniAD")
    if importlib.util.find_spec("einops") is None:
        raise BenchError("the official UniAD needs einops: pip install -e '.[perf]'")
    checkout = file.parents[2] if file.parent.name == "reconstructions" else file.parent
    ours = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "models" or k.startswith("models.")}
    sys.path.insert(0, str(checkout))
    name = "uniad_official_reconstruction"
    try:
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        sys.path.remove(str(checkout))
        for k in [k for k in sys.modules if k == "models" or k.startswith("models.")]:
            del sys.modules[k]
        sys.modules.update(ours)
    return module


def build_official(module: ModuleType, cfg: DictConfig, channels: int) -> nn.Module:
    """The official ``UniAD`` at ``cfg``'s sizes (hidden, layers, FFN, neighbor size, jitter)."""
    arch = OmegaConf.to_container(cfg.arch, resolve=True)
    kwargs = {**OFFICIAL_CONFIG, **{k: arch[k] for k in ("hidden_dim", "nhead", "num_encoder_layers",
                                                         "num_decoder_layers", "dim_feedforward") if k in arch}}
    kwargs["dropout"] = float(cfg.model.dropout)
    return module.UniAD(
        inplanes=[channels], instrides=[int(cfg.backbone.feature_stride)], feature_size=list(feature_size(cfg)),
        feature_jitter=SimpleNamespace(scale=float(cfg.model.fj_scale), prob=float(cfg.model.fj_prob)),
        neighbor_mask=SimpleNamespace(neighbor_size=list(arch["neighbor_size"]), mask=[True] * 3),
        **kwargs,
    )


@contextlib.contextmanager
def cuda_calls_stay_on(device: torch.device):
    """The official code moves its jitter noise and mask with ``.cuda()``; off CUDA that is a no-op here."""
    if torch.device(device).type == "cuda":
        yield
        return
    saved = torch.Tensor.cuda
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    try:
        yield
    finally:
        torch.Tensor.cuda = saved


class OfficialDetector(nn.Module):
    """The official reconstruction behind ``models.detector``'s steps; the loss is its ``MSELoss``."""

    frozen_target = True

    def __init__(self, reconstruction: nn.Module, device: torch.device):
        super().__init__()
        self.reconstruction = reconstruction
        self.device = torch.device(device)

    def reconstruct(self, target: torch.Tensor) -> torch.Tensor:
        with cuda_calls_stay_on(self.device):
            return self.reconstruction({"feature_align": target})["feature_rec"]

    def loss(self, target, rec):
        return F.mse_loss(rec, target)
