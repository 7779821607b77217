"""The visualization decoder of C.3 / Figure S2 as two tasks.

``task=train_vis_decoder``: train ``VisDecoder`` (reversed ResNet-34, transposed convolutions) to map
the backbone's feature map back to the image, on normal *and* anomalous images (train + test sets),
and save ``vis_decoder.ckpt`` in the run dir.

``task=vis_recon ckpt=<vis_decoder.ckpt> vis.models=[run_dir,...]``: for a few anomalous test
images, render the image, its ground truth and, for each reconstruction model (a finished fit run
dir), the decoded reconstruction of its features, as one PNG grid like Figure S2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import ConcatDataset, DataLoader
from tqdm import tqdm

from bench import checkpoint
from bench.build import build_datasets, build_detector, instantiate_node
from bench.errors import BenchError
from models.vis_decoder import VisDecoder
from record.files import CKPT, RECORD
from record.store import read_record_file

VIS_CKPT = "vis_decoder.ckpt"


def _backbone_and_data(cfg: DictConfig, device):
    if cfg.model.input != "features":
        raise BenchError(f"model={cfg.model.name} reconstructs images; the vis decoder renders features")
    backbone = instantiate_node(cfg.backbone, name=cfg.backbone.name).to(device).eval()
    train_set, test_set = build_datasets(cfg.data)
    return backbone, train_set, test_set


def train_vis_decoder(cfg: DictConfig, run_dir: Path, device) -> dict:
    backbone, train_set, test_set = _backbone_and_data(cfg, device)
    decoder = VisDecoder(backbone.out_channels, feature_stride=int(cfg.backbone.feature_stride)).to(device)
    optimizer = torch.optim.AdamW(decoder.parameters(), lr=float(cfg.trainer.lr),
                                  weight_decay=float(cfg.trainer.weight_decay))
    loader = DataLoader(ConcatDataset([train_set, test_set]), batch_size=int(cfg.trainer.batch_size), shuffle=True,
                        generator=torch.Generator().manual_seed(int(cfg.seed)))
    losses = []
    for _ in tqdm(range(int(cfg.vis.epochs)), desc="vis decoder", dynamic_ncols=True):
        decoder.train()
        total, steps = 0.0, 0
        for batch in loader:
            images = batch["image"].to(device)
            with torch.no_grad():
                feats = backbone(images)
            rendered = decoder(feats)
            if rendered.shape[-2:] != images.shape[-2:]:  # a ViT resizes to a multiple of its patch (64 -> 56 px)
                images = torch.nn.functional.interpolate(images, size=rendered.shape[-2:], mode="bilinear",
                                                         align_corners=False)
            loss = torch.nn.functional.mse_loss(rendered, images)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / max(steps, 1))
    path = Path(run_dir) / VIS_CKPT
    checkpoint.save(path, model=decoder.state_dict(), backbone=cfg.backbone.name,
                    weights=str(cfg.backbone.weights), in_channels=backbone.out_channels,
                    feature_stride=int(cfg.backbone.feature_stride))
    return {"vis_decoder": str(path), "loss_first": losses[0], "loss_last": losses[-1]}


def _load_run(run_dir: str, cfg: DictConfig, device, config: dict | None = None):
    """The detector of a finished fit run, rebuilt from the installed config groups as its checkpoint (or,
    for checkpoints without a config, its record) says (``checkpoint.model_config``: nothing from a file
    is ever instantiated). ``config``: ``cfg`` resolved (``bench.resolve``)."""
    record_path = Path(run_dir) / RECORD
    if not record_path.is_file():
        raise BenchError(f"vis.models entry {run_dir} has no {RECORD}: give finished fit run dirs")
    ckpt = Path(run_dir) / CKPT
    state = checkpoint.load(ckpt, own=False)
    saved, choices = state.get("config"), state.get("choices")
    if not isinstance(saved, dict):
        try:
            record = read_record_file(record_path)
        except ValueError as exc:
            raise BenchError(f"vis.models entry {run_dir}: {record_path} cannot be read ({exc})") from None
        saved, choices = record.raw.get("config"), record.choices
    run_cfg, _ = checkpoint.model_config(cfg, saved, choices, given=[], source=ckpt, resolved=config)
    detector = build_detector(run_cfg).to(device).eval()
    checkpoint.load_detector_state(detector, state["model"], ckpt)
    return run_cfg, detector


def vis_recon(cfg: DictConfig, run_dir: Path, device, config: dict | None = None) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from data.transforms import denormalize

    if not cfg.ckpt:
        raise BenchError("task=vis_recon needs ckpt=<run dir>/vis_decoder.ckpt from task=train_vis_decoder")
    if not cfg.vis.models:
        raise BenchError("task=vis_recon needs vis.models=[run_dir,...] (finished fit runs to render)")
    state = checkpoint.load(Path(cfg.ckpt), own=False)
    decoder = VisDecoder(int(state["in_channels"]), feature_stride=int(state["feature_stride"])).to(device).eval()
    decoder.load_state_dict(state["model"])
    backbone, _, test_set = _backbone_and_data(cfg, device)
    models = []
    for path in cfg.vis.models:
        run_cfg, detector = _load_run(str(path), cfg, device, config)
        if run_cfg.backbone.name != state["backbone"] or detector.backbone.out_channels != state["in_channels"]:
            raise BenchError(f"{path} uses backbone {run_cfg.backbone.name}; the vis decoder was trained on "
                             f"{state['backbone']}: train one on the same backbone")
        models.append((f"{run_cfg.model.name}" + (f" ({run_cfg.decoder.design})" if run_cfg.model.name == "uniad"
                                                  else ""), detector))
    # anomalous test images, spread over categories
    picks, seen = [], set()
    samples = test_set.samples
    for i, s in enumerate(samples):
        if s.label == 1 and s.category not in seen:
            picks.append(i)
            seen.add(s.category)
    picks = picks[: int(cfg.vis.num_images)]
    cols = 2 + len(models) + 1
    fig, axes = plt.subplots(len(picks), cols, figsize=(2.2 * cols, 2.2 * len(picks)), squeeze=False)
    with torch.no_grad():
        for r, idx in enumerate(picks):
            item = test_set[idx]
            image = item["image"].unsqueeze(0).to(device)
            feats = backbone(image)
            panels = [("image", denormalize(item["image"])), ("ground truth", item["mask"][0].numpy()),
                      ("backbone features", denormalize(decoder(feats)[0].cpu()))]
            for name, detector in models:
                panels.append((name, denormalize(decoder(detector.reconstruct(feats))[0].cpu())))
            for c, (title, panel) in enumerate(panels):
                ax = axes[r][c]
                ax.imshow(np.clip(panel, 0, 1), cmap="gray" if panel.ndim == 2 else None)
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(title, fontsize=8)
            axes[r][0].set_ylabel(item["category"], fontsize=8)
    fig.tight_layout()
    out = Path(run_dir) / "vis_recon.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    print(f"wrote {out}")
    return {"png": str(out), "images": len(picks), "models": [m for m, _ in models]}


def run_task(job) -> dict:
    """The record's ``outputs`` of the vis task of ``job`` (a ``bench.resolve.Job``)."""
    if job.task == "train_vis_decoder":
        return train_vis_decoder(job.cfg, job.run_dir, job.device)
    return vis_recon(job.cfg, job.run_dir, job.device, job.config)
