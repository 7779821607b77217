"""``python -m bench [overrides]``: one job (or a sweep with -m) of UniAD Bench."""

from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import bench  # noqa: F401  (registers the config resolvers)
from bench.job import run
from bench.summary import format_summary


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run_dir = hc.runtime.output_dir
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        record = run(cfg, run_dir, list(hc.overrides.task))
    except Exception as exc:  # the record (status: failed) is written; say it in one line
        from bench.job import one_line

        print(f"error: {one_line(exc)}  [record: {run_dir}/metrics.json]", file=sys.stderr)
        if multirun:
            return  # the sweep goes on; the end-of-sweep callback lists failed cells
        sys.exit(1)
    summary = format_summary(record)
    if summary:
        print(summary)
    print(f"record: {run_dir}/metrics.json")


if __name__ == "__main__":
    main()
