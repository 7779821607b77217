"""``python -m bench [overrides]``: one job (or a sweep with -m) of UniAD Bench."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import bench  # noqa: F401  (registers the config resolvers)
from bench.groups import job_choices
from bench.job import run
from bench.summary import format_summary

MULTIRUN_FLAGS = ("-m", "--multirun")
# keys whose value is a path on this machine: a run dir of a sweep holds `=` and `,` in its name
PATH_KEYS = ("ckpt", "predict.input", "data.root", "paths.data_root", "paths.cache_root")
_PLAIN = re.compile(r"[\w./~+@-]*")


def multirun_first(argv: list[str]) -> list[str]:
    """``argv`` with ``-m``/``--multirun`` moved to the front of the arguments: Hydra's argparse takes the
    flag only before the overrides, ``python -m bench +experiment=ablation -m`` is as natural."""
    args = argv[1:]
    flags = [a for a in args if a in MULTIRUN_FLAGS]
    if not flags:
        return list(argv)
    return [argv[0], flags[0], *[a for a in args if a not in MULTIRUN_FLAGS]]


def quote_paths(argv: list[str]) -> list[str]:
    """``argv`` with the value of a path key quoted for Hydra where it names an existing file or folder and
    holds characters of Hydra's override grammar (``ckpt=multirun/x/decoder.design=lqd_a,model.nma=true/seed=1``
    works as typed: unquoted, its ``,`` would be a sweep and its ``=`` a parse error)."""
    out = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if (sep and key.lstrip("+~") in PATH_KEYS and value and value[0] not in "'\""
                and not _PLAIN.fullmatch(value) and Path(value).expanduser().exists()):
            arg = f"{key}='" + value.replace("'", "\\'") + "'"
        out.append(arg)
    return out


def error_line(exc: BaseException) -> str:
    """``error: <one line>  [record: PATH]``, naming the record only when the job wrote it."""
    from bench.job import one_line

    path = getattr(exc, "record_path", None)
    where = f"[record: {path}]" if path is not None and Path(path).is_file() else "[no record written]"
    return f"error: {one_line(exc)}  {where}"


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run_dir = hc.runtime.output_dir
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        record = run(cfg, run_dir, list(hc.overrides.task), job_choices(hc.runtime.choices))
    except Exception as exc:  # the record (status: failed) is written; say it in one line
        print(error_line(exc), file=sys.stderr)
        if multirun:
            return  # the sweep goes on; the end-of-sweep callback lists failed cells
        sys.exit(1)
    if record.get("locked_by") is not None or record.get("status") == "skipped":
        return  # another live job runs this cell and writes its record (logged by bench.job)
    summary = format_summary(record)
    if summary:
        print(summary)
    print(f"record: {run_dir}/metrics.json")


if __name__ == "__main__":
    sys.argv = quote_paths(multirun_first(sys.argv))
    main()
