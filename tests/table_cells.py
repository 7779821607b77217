"""Helpers shared by the table-equivalence test and its fixture: a cell's config in canonical form."""

from __future__ import annotations

import json

# What a table's rows are made of (issue 13: "the resolved model/decoder/loss/backbone config per row x
# seed"), with the data split and the run's identity; the rest of the config belongs to other settings.
CELL_KEYS = ("task", "experiment", "seed", "n_seeds", "profile_name", "model", "decoder", "loss", "backbone")
DATA_KEYS = ("name", "normal_classes")
# model keys added after the fixtures were captured: fp32_scores (arch.fp32_scores, how bf16 treats the attention
# scores; the cells run in fp32, where it changes nothing)
ADDED_MODEL_KEYS = ("fp32_scores",)


def canonical_config(config: dict) -> str:
    """The table-relevant part of one cell's resolved config, as sorted JSON."""
    cell = {k: config.get(k) for k in CELL_KEYS}
    if isinstance(cell["model"], dict):
        cell["model"] = {k: v for k, v in cell["model"].items() if k not in ADDED_MODEL_KEYS}
    cell["data"] = {k: config["data"][k] for k in DATA_KEYS if k in config["data"]}
    return json.dumps(cell, sort_keys=True)


def records_from_cells(cells: dict[str, list[str]], root) -> None:
    """Hand-made run records for every cell: metrics drawn from a generator seeded by the cell itself.

    The numbers depend only on the cell's canonical config, so the same cells give the same records
    whatever code enumerated them. Every row keeps its first three seeds; one cell per table fails.
    """
    import hashlib
    from pathlib import Path

    import numpy as np

    root = Path(root)
    for experiment, configs in sorted(cells.items()):
        kept: dict[str, int] = {}
        for index, text in enumerate(configs):
            config = json.loads(text)
            row_key = json.dumps({k: v for k, v in config.items() if k != "seed"}, sort_keys=True)
            kept[row_key] = kept.get(row_key, 0) + 1
            if kept[row_key] > 3:
                continue
            digest = hashlib.sha256(text.encode()).hexdigest()
            rng = np.random.default_rng(int(digest[:12], 16))
            record = {
                "status": "completed",
                "task": config["task"],
                "experiment": experiment,
                "overrides": [f"seed={config['seed']}"],
                "seed": config["seed"],
                "config": config,
                "metrics": None,
                "complexity": None,
                "env": {"torch": "x"},
            }
            if config["task"] == "complexity":
                record["complexity"] = {
                    "learnable_params": int(rng.integers(10**5, 10**7)),
                    "gflops": round(float(rng.uniform(1, 10)), 3),
                    "backbone_params": int(rng.integers(10**6, 10**7)),
                }
            else:
                det, loc = rng.uniform(0.6, 0.99, size=2)
                record["metrics"] = {
                    "mean": {"image_auroc": float(det), "pixel_auroc": float(loc)},
                    "per_class": {},
                }
                record["complexity"] = {"backbone_params": int(rng.integers(10**6, 10**7))}
            if index == 0:
                record.update(status="failed", error="RuntimeError: hand-made failure", metrics=None)
            run_dir = root / experiment / f"cell{index:03d}"
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "metrics.json").write_text(json.dumps(record))
