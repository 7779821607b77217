"""The official Dinomaly decoder (a guojiajeremy/Dinomaly checkout) on cached target-layer tokens, for timing.

For comparison only (``bench.tools.perf_dinomaly``): the checkout's files are imported by file path, never
copied. ``models/uad.py`` (``ViTill``), ``models/vision_transformer.py`` (``Block``, ``bMlp``,
``LinearAttention2``) and ``optimizers/StableAdamW.py`` need torch only and load as they are; of ``utils.py``
(which imports cv2, the datasets and plotting) only ``global_cosine_hm_percent``, ``modify_grad`` and
``cal_anomaly_maps`` are compiled from its source. ``ViTill`` runs unchanged on a stand-in encoder whose
"blocks" hand back the cached target layers, so its fusing, grouping and reshaping are all timed; the frozen
encoder itself is not (as our feature cache skips it).
"""

from __future__ import annotations

import ast
import importlib.util
import os
from functools import partial
from pathlib import Path
from types import ModuleType, SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

from bench.errors import BenchError

FILES = {"uad": Path("models") / "uad.py", "vit": Path("models") / "vision_transformer.py",
         "optim": Path("optimizers") / "StableAdamW.py", "utils": Path("utils.py")}
UTILS_FUNCTIONS = ("modify_grad", "global_cosine_hm_percent", "cal_anomaly_maps")


def official_root(path: str | os.PathLike) -> Path | None:
    """The checkout's root (``path`` or ``path/Dinomaly``) when it holds every file used, else None."""
    path = Path(path).expanduser()
    for root in (path, path / "Dinomaly"):
        if all((root / f).is_file() for f in FILES.values()):
            return root.resolve()
    return None


def _module(file: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _functions(file: Path, names: tuple[str, ...]) -> dict:
    """The top-level functions ``names`` of ``file``, compiled from its source with torch, F and partial."""
    tree = ast.parse(file.read_text(), str(file))
    nodes = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in names]
    missing = set(names) - {n.name for n in nodes}
    if missing:
        raise BenchError(f"{file} has no {', '.join(sorted(missing))}: give a guojiajeremy/Dinomaly checkout")
    namespace = {"torch": torch, "F": F, "partial": partial, "nn": nn}
    exec(compile(ast.Module(body=nodes, type_ignores=[]), str(file), "exec"), namespace)  # noqa: S102
    return {n: namespace[n] for n in names}


def load_official_dinomaly(path: str | os.PathLike) -> SimpleNamespace:
    """``ViTill``, ``Block``, ``bMlp``, ``LinearAttention2``, ``StableAdamW``, the loss and the map of a checkout."""
    root = official_root(path)
    if root is None:
        raise BenchError(f"no {', '.join(map(str, FILES.values()))} under {path}: give a guojiajeremy/Dinomaly "
                         "checkout")
    uad = _module(root / FILES["uad"], "dinomaly_official_uad")
    vit = _module(root / FILES["vit"], "dinomaly_official_vision_transformer")
    optim = _module(root / FILES["optim"], "dinomaly_official_stable_adamw")
    return SimpleNamespace(ViTill=uad.ViTill, Block=vit.Block, bMlp=vit.bMlp, LinearAttention2=vit.LinearAttention2,
                           StableAdamW=optim.StableAdamW, **_functions(root / FILES["utils"], UTILS_FUNCTIONS))


class CachedLayers(nn.Module):
    """Stands in for the frozen encoder in ``ViTill.forward``: ``prepare_tokens`` takes the cached
    (B, L, prefix + h*w, C) target layers, and "block" i returns layer i (no encoder is run)."""

    def __init__(self, num_layers: int, register_tokens: int):
        super().__init__()
        self.num_register_tokens = register_tokens
        self.layers = None
        self.blocks = [partial(self._layer, i) for i in range(num_layers)]

    def _layer(self, i: int, x: torch.Tensor) -> torch.Tensor:
        return self.layers[:, i]

    def prepare_tokens(self, layers: torch.Tensor) -> torch.Tensor:
        self.layers = layers
        return layers[:, 0]


def build_official_dinomaly(official: SimpleNamespace, *, embed_dim: int, num_heads: int, num_blocks: int,
                            num_layers: int, groups: list[list[int]], register_tokens: int,
                            bottleneck_dropout: float = 0.2) -> tuple[nn.Module, nn.Module]:
    """``(ViTill, trainable)`` as ``dinomaly_mvtec_uni.py`` builds them (one ``bMlp`` bottleneck, linear-attention
    blocks with qkv bias and LayerNorm eps 1e-8, truncated-normal init of the trainable part)."""
    bottleneck = nn.ModuleList([official.bMlp(embed_dim, embed_dim * 4, embed_dim, drop=bottleneck_dropout)])
    decoder = nn.ModuleList(
        official.Block(dim=embed_dim, num_heads=num_heads, mlp_ratio=4.0, qkv_bias=True,
                       norm_layer=partial(nn.LayerNorm, eps=1e-8), attn=official.LinearAttention2)
        for _ in range(num_blocks))
    model = official.ViTill(encoder=CachedLayers(num_layers, register_tokens), bottleneck=bottleneck, decoder=decoder,
                            target_layers=list(range(num_layers)), mask_neighbor_size=0,
                            fuse_layer_encoder=groups, fuse_layer_decoder=groups)
    trainable = nn.ModuleList([bottleneck, decoder])
    for m in trainable.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.01, a=-0.03, b=0.03)
            nn.init.zeros_(m.bias)
    return model, trainable


def official_train_step(official: SimpleNamespace, model: nn.Module, trainable: nn.Module, *, p: float,
                        factor: float, clip: float, lr: float, weight_decay: float):
    """``step(layers)``: one iteration of the official loop (forward, ``global_cosine_hm_percent``, backward,
    gradient norm clipped, ``StableAdamW`` as the recipe sets it); the loss stays on the device."""
    optimizer = official.StableAdamW([{"params": trainable.parameters()}], lr=lr, betas=(0.9, 0.999),
                                     weight_decay=weight_decay, amsgrad=True, eps=1e-10)

    def step(layers: torch.Tensor) -> torch.Tensor:
        model.train()
        en, de = model(layers)
        loss = official.global_cosine_hm_percent(en, de, p=p, factor=factor)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(trainable.parameters(), max_norm=clip)
        optimizer.step()
        return loss.detach()

    return step


def official_inference(official: SimpleNamespace, model: nn.Module, size: int):
    """``infer(layers)``: the official evaluation's forward and ``cal_anomaly_maps`` at ``size`` px."""

    @torch.no_grad()
    def infer(layers: torch.Tensor) -> torch.Tensor:
        model.eval()
        en, de = model(layers)
        return official.cal_anomaly_maps(en, de, size)[0]

    return infer

