"""Figures (matplotlib Agg, PNG): ours vs the paper per table, and anomaly maps like Figure S3.

Only the object-oriented API with an Agg canvas is used (no pyplot state, no display needed).
"""

from __future__ import annotations

import math
import os
import re
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from record.files import MAPS
from reports.aggregate import Table

OURS_COLOR, PAPER_COLOR = "#1f77b4", "#bbbbbb"
PNG_META = {"Software": None}


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(text)).strip("_.") or "x"


def _save(fig: Figure, path: Path, dpi: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=dpi, metadata=PNG_META)
    return path


def _row_label(row) -> str:
    label = row.spec.short or row.spec.id
    if row.variant:
        label = f"{label} [{row.variant}]"
    return label if len(label) <= 28 else label[:27] + "…"


def bar_chart(table: Table, path: str | Path) -> Path | None:
    """Grouped bars per row: ours (mean, error bar = std over seeds) beside the paper, a panel per metric."""
    spec = table.spec
    metrics = [
        m
        for m in spec.metrics
        if any(r.cells[m.key].mean is not None or r.cells[m.key].paper is not None for r in table.rows)
    ]
    if not metrics:
        return None
    rows = table.rows
    x = np.arange(len(rows))
    width = 0.4 if spec.has_paper else 0.7
    width_in = max(4.0, 0.55 * len(rows) + 1.5) * len(metrics)
    height_in = 4.2
    labels = [_row_label(r) for r in rows]
    fig = Figure(figsize=(width_in, height_in))
    # room below the axes for the 45°-rotated row labels (about 0.045 in of height per character at 8 pt)
    bottom = min(0.4, max(0.12, (0.35 + 0.045 * max(map(len, labels))) / height_in))
    fig.subplots_adjust(left=0.8 / width_in, right=1 - 0.2 / width_in, bottom=bottom, top=0.8, wspace=0.25)
    for k, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), k + 1)
        cells = [r.cells[metric.key] for r in rows]
        ours = [c.mean if c.mean is not None else np.nan for c in cells]
        errs = [c.std if c.std is not None else 0.0 for c in cells] if metric.with_std else None
        shift = -width / 2 if spec.has_paper else 0.0
        ax.bar(
            x + shift,
            ours,
            width,
            yerr=errs,
            capsize=3,
            color=OURS_COLOR,
            label="ours (mean ± std over seeds)" if metric.with_std else "ours",
        )
        values = [v for v in ours if not math.isnan(v)]
        if spec.has_paper:
            paper = [c.paper if c.paper is not None else np.nan for c in cells]
            ax.bar(x + width / 2, paper, width, color=PAPER_COLOR, label="paper")
            values += [v for v in paper if not math.isnan(v)]
        for i, c in enumerate(cells):
            if c.mean is None and not rows[i].spec.paper_only:
                ax.text(x[i] + shift, 0.02, "—", transform=ax.get_xaxis_transform(), ha="center", color="red")
        if metric.unit == "%" and values:
            low = max(0.0, 10 * math.floor((min(values) - 5) / 10))
            ax.set_ylim(low, 100.0)
        elif values and min(values) > 0 and max(values) / min(values) > 50:
            ax.set_yscale("log")
        ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=8)
        ax.set_ylabel(
            metric.label if f"({metric.unit})" in metric.label else f"{metric.label} ({metric.unit})"
        )
        ax.set_title(f"{metric.label}", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
        if k == 0:  # one legend between the title and the panels, never over a bar
            fig.legend(*ax.get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, 0.93), ncol=2,
                       fontsize=7, frameon=False)
    fig.suptitle(f"Table {spec.key}: {spec.title}" if spec.has_paper else spec.title, fontsize=10)
    return _save(fig, Path(path))


def map_files(run_dir: str | Path) -> dict[str, list[Path]]:
    """``{category: [npz, …]}`` saved under ``<run dir>/maps`` (eval.save_maps=k), sorted."""
    root = Path(run_dir) / MAPS
    if not root.is_dir():
        return {}
    out = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(folder.glob("*.npz"))
        if files:
            out[folder.name] = files
    return out


def pick_maps(run_dir: str | Path, max_images: int = 8) -> list[tuple[str, Path]]:
    """A few examples: round robin over categories (first file of each, then the second …)."""
    files = map_files(run_dir)
    picked: list[tuple[str, Path]] = []
    depth = 0
    while len(picked) < max_images and any(depth < len(v) for v in files.values()):
        for category, paths in files.items():
            if depth < len(paths) and len(picked) < max_images:
                picked.append((category, paths[depth]))
        depth += 1
    return picked


class MapError(ValueError):
    """A saved anomaly map that cannot be shown (unreadable, pickled objects, missing or odd arrays)."""


def read_map(file: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image, mask, map)`` of one ``maps/<category>/<n>.npz`` as floats; MapError with the reason when the
    file is unreadable, holds objects (never unpickled) or lacks a numeric array of the right rank."""
    try:
        with np.load(file, allow_pickle=False) as data:
            arrays = {key: data[key] for key in ("image", "mask", "map")}
    except KeyError as exc:
        raise MapError(f"no array {exc}") from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # allow_pickle=False: objects raise
        raise MapError(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    for key, rank in (("image", 3), ("mask", 2), ("map", 2)):
        if arrays[key].dtype.kind not in "biuf" or arrays[key].ndim != rank:
            raise MapError(f"{key} is a {arrays[key].ndim}-d {arrays[key].dtype} array, not a {rank}-d number array")
    return tuple(np.asarray(arrays[k], dtype=float) for k in ("image", "mask", "map"))


def anomaly_map_figure(
    run_dir: str | Path, path: str | Path, max_images: int = 8, title: str | None = None
) -> Path | None:
    """Figure S3-like rows: image, ground truth, anomaly map (one colour scale for the whole figure)."""
    items = []
    for category, file in pick_maps(run_dir, max_images):
        try:
            image, mask, amap = read_map(file)
        except MapError as exc:
            warnings.warn(f"reports: anomaly map {file} skipped: {exc}", stacklevel=2)
            continue
        items.append((category, file.stem, image, mask, amap))
    if not items:
        return None
    vmin = min(float(np.nanmin(m)) for *_, m in items)
    vmax = max(float(np.nanmax(m)) for *_, m in items)
    fig = Figure(figsize=(6.4, 2.0 * len(items) + 0.6))
    axes = fig.subplots(len(items), 3, squeeze=False)
    fig.subplots_adjust(
        left=0.08, right=0.86, bottom=0.02, top=1 - 0.6 / (2.0 * len(items) + 0.6), hspace=0.08, wspace=0.05
    )
    image_ref = None
    for i, (category, stem, image, mask, amap) in enumerate(items):
        axes[i][0].imshow(np.clip(image, 0.0, 1.0))
        axes[i][1].imshow(mask, cmap="gray", vmin=0, vmax=1)
        image_ref = axes[i][2].imshow(amap, cmap="jet", vmin=vmin, vmax=vmax)
        axes[i][0].set_ylabel(f"{category}/{stem}", fontsize=8)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    for ax, name in zip(axes[0], ("image", "ground truth", "anomaly map"), strict=True):
        ax.set_title(name, fontsize=9)
    if image_ref is not None:
        fig.colorbar(image_ref, cax=fig.add_axes((0.88, 0.2, 0.025, 0.6)))
    fig.suptitle(title or str(run_dir), fontsize=8)
    return _save(fig, Path(path), dpi=80)


def write_figures(
    tables: list[Table], frame: pd.DataFrame, out_dir: str | Path, max_map_runs: int = 6, max_images: int = 8
) -> list[Path]:
    """A bar chart per table, and anomaly-map figures for the first runs (by folder) that kept maps."""
    out_dir = Path(out_dir)
    written = []
    for table in tables:
        path = bar_chart(table, out_dir / f"{slug(table.key)}.png")
        if path:
            written.append(path)
    if not frame.empty and max_map_runs > 0:
        kept = frame[(frame["status"] == "completed") & frame["has_maps"].astype(bool)]
        parents = [os.path.dirname(os.path.abspath(d)) for d in frame["run_dir"]]
        base = os.path.commonpath(parents) if parents else ""
        for run_dir in list(kept["run_dir"])[:max_map_runs]:
            name = os.path.relpath(os.path.abspath(run_dir), base) if base else run_dir
            path = anomaly_map_figure(
                run_dir, out_dir / f"maps_{slug(name)}.png", max_images=max_images, title=name
            )
            if path:
                written.append(path)
    return written
