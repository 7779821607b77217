"""Experiment loggers: ``none``, ``csv`` (files in the run dir), ``tensorboard`` (event files in the run dir)
and ``wandb`` (one run per job).

Each is built from its node (``conf/logger/<name>.yaml``, ``_target_``) by ``make_logger`` with the run it
logs: ``run_dir`` and a ``RunInfo``. A logger has ``log_scalars``, ``log_final``, ``log_maps`` and ``finish``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from rules import INT


@dataclass(frozen=True)
class RunInfo:
    """What a logger may name a run by: its experiment, table row, seed, dataset and resolved config."""

    experiment: str | None = None
    row: str = ""
    seed: int | None = None
    dataset: str | None = None
    config: dict = field(default_factory=dict)


class NullLogger:
    def __init__(self, run_dir: Path | None = None, run: RunInfo | None = None):
        pass

    def log_scalars(self, values: dict, step: int) -> None:
        pass

    def log_final(self, metrics: dict) -> None:
        pass

    def log_maps(self, category: str, folder: Path | None) -> None:
        pass

    def finish(self, status: str) -> None:
        pass


class CSVLogger(NullLogger):
    """Scalars per epoch to ``log.csv``; final per-class metrics to ``final_metrics.csv``."""

    def __init__(self, run_dir: Path, run: RunInfo | None = None):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "log.csv"
        self._fields: list[str] | None = None

    def log_scalars(self, values: dict, step: int) -> None:
        row = {"step": step, **values}
        new = self._fields is None
        if new:
            self._fields = list(row)
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self._fields, extrasaction="ignore")
            if new and f.tell() == 0:
                writer.writeheader()
            writer.writerow(row)

    def log_final(self, metrics: dict) -> None:
        rows = [{"category": c, **m} for c, m in sorted(metrics.get("per_class", {}).items())]
        rows.append({"category": "mean", **metrics.get("mean", {})})
        with (self.run_dir / "final_metrics.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[-1]))
            writer.writeheader()
            writer.writerows(rows)


class WandbLogger(NullLogger):
    """One wandb run per job, grouped by experiment, job type by table row, tagged by seed and dataset."""

    RULES = {"images": INT(0)}  # anomaly-map images logged at the end

    def __init__(self, run_dir: Path, run: RunInfo, *, project: str, entity: str | None, images: int):
        import wandb

        self.wandb = wandb
        self.n_images = int(images)
        self._images = 0
        row = run.row
        self.run = wandb.init(
            project=project, entity=entity, dir=str(run_dir),
            group=run.experiment or "adhoc", job_type=row or "default", name=f"{row or 'run'}-seed{run.seed}",
            tags=[f"seed={run.seed}", f"data={run.dataset}"], config=run.config, reinit=True,
        )

    def log_scalars(self, values: dict, step: int) -> None:
        self.run.log(values, step=step)

    def log_final(self, metrics: dict) -> None:
        per_class = metrics.get("per_class", {})
        keys = sorted({k for m in per_class.values() for k in m})
        table = self.wandb.Table(columns=["category", *keys])
        for cat, m in sorted(per_class.items()):
            table.add_data(cat, *[m.get(k) for k in keys])
        self.run.log({"metrics/per_class": table, **{f"metrics/{k}": v for k, v in metrics.get("mean", {}).items()}})

    def log_maps(self, category: str, folder: Path | None) -> None:
        import numpy as np

        if folder is None or self._images >= self.n_images:
            return
        for path in sorted(Path(folder).glob("*.npz")):
            if self._images >= self.n_images:
                break
            arr = np.load(path)
            amap = arr["map"] / (arr["map"].max() + 1e-8)
            self.run.log({f"maps/{category}/{path.stem}": [self.wandb.Image(arr["image"], caption="image"),
                                                              self.wandb.Image(amap, caption="anomaly map")]})
            self._images += 1

    def finish(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "completed" else 1)
        # finish() returns before wandb's service has written everything to the run's files; teardown waits
        # for it, so an offline run is complete on disk when the job ends (and `wandb sync` sees all of it)
        teardown = getattr(self.wandb, "teardown", None)
        if teardown is not None:
            teardown()


class TensorBoardLogger(NullLogger):
    """Event files under ``<run dir>/<subdir>`` (``tensorboard --logdir multirun/...`` shows a sweep): scalars
    per epoch, the final mean and per-class metrics, the config as text, and the saved maps' pictures."""

    RULES = {"images": INT(0)}  # anomaly-map pictures logged at the end

    def __init__(self, run_dir: Path, run: RunInfo, *, subdir: str, images: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / subdir))
        self.n_images = int(images)
        self._images = 0
        self._step = 0
        name = f"{run.experiment or 'adhoc'}/{run.row or 'default'}/seed={run.seed}"
        self.writer.add_text("run", f"{name} on {run.dataset}")

    def log_scalars(self, values: dict, step: int) -> None:
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, step)
        self._step = max(self._step, step)

    def log_final(self, metrics: dict) -> None:
        for key, value in (metrics.get("mean") or {}).items():
            if value is not None:
                self.writer.add_scalar(f"metrics/{key}", value, self._step)
        for category, values in sorted((metrics.get("per_class") or {}).items()):
            for key, value in values.items():
                if value is not None:
                    self.writer.add_scalar(f"per_class/{category}/{key}", value, self._step)

    def log_maps(self, category: str, folder: Path | None) -> None:
        import numpy as np
        from PIL import Image

        for path in sorted(Path(folder).glob("*.png")) if folder is not None else ():
            if self._images >= self.n_images:
                return
            with Image.open(path) as picture:
                self.writer.add_image(f"maps/{category}/{path.stem}", np.asarray(picture.convert("RGB")),
                                      self._step, dataformats="HWC")
            self._images += 1

    def finish(self, status: str) -> None:
        self.writer.add_text("status", status)
        self.writer.close()


def make_logger(node: DictConfig, run_dir: Path, run: RunInfo):
    """The logger that ``node._target_`` names (``conf/logger/<name>.yaml``), for this run."""
    spec = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "name"}
    return instantiate(spec, _partial_=True, _convert_="all")(run_dir=Path(run_dir), run=run)
