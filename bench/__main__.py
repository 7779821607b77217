"""``python -m bench [overrides]``: one job (or a sweep with -m) of UniAD Bench.

A sweep job prints ``job k/N: <overrides>`` and one line saying how it ended; its metrics tables go to
``<run dir>/job.log`` (with ``verbose=true`` to the console too). Ctrl-C saves the last finished epoch
(``bench.interrupt``) and prints one line: where the job stopped and the command that resumes it.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

import bench  # noqa: F401  (registers the config resolvers)
from bench import interrupt, job_log, outcome
from bench.errors import RunDirRefused
from bench.groups import job_choices
from bench.job import run
from bench.summary import format_summary
from bench.sweep_plan import job_count
from bench.threads import torch_threads

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


def ended_line(record: dict) -> str:
    """``completed in 8.3 s: image_auroc 97.1, pixel_auroc 95.3`` (means over the classes, in %)."""
    mean = (record.get("metrics") or {}).get("mean") or {}
    total = (record.get("timing") or {}).get("total_s")
    shown = ", ".join(f"{k} {100 * v:.1f}" for k, v in mean.items() if isinstance(v, int | float) and v == v)
    return f"completed in {total} s" + (f": {shown}" if shown else "")


def command() -> str:
    return shlex.join(["python", "-m", "bench", *sys.argv[1:]])


def one_job(cfg: DictConfig, run_dir: Path, hc, multirun: bool) -> None:
    """Run the job; in a sweep, write its outcome (``bench.outcome``) and print how it ended."""
    import torch

    from bench.job import one_line

    say = print if not multirun else (lambda text, **kw: print(f"  {text}", **kw))
    try:
        torch.set_num_threads(torch_threads(cfg.trainer.threads))
        record = run(cfg, run_dir, list(hc.overrides.task), job_choices(hc.runtime.choices))
    except KeyboardInterrupt:
        now = interrupt.save_pending()
        if multirun:
            outcome.write(run_dir, "interrupted")
        fresh_line = "\n" if sys.stderr.isatty() else ""  # after a progress bar's last frame
        print(fresh_line + interrupt.stopped_line(now, run_dir, command()), file=sys.stderr)
        sys.exit(130)
    except RunDirRefused as exc:
        if not multirun:
            print(error_line(exc), file=sys.stderr)
            sys.exit(1)
        outcome.write(run_dir, "refused", str(exc))
        say(f"refused: {exc}", file=sys.stderr)
        return
    except Exception as exc:  # the record (status: failed) is written; say it in one line
        if not multirun:
            print(error_line(exc), file=sys.stderr)
            sys.exit(1)
        outcome.write(run_dir, "failed", one_line(exc))
        say(error_line(exc), file=sys.stderr)
        return  # the sweep goes on; the end-of-sweep callback lists failed cells
    if record.get("locked_by") is not None:
        if multirun:
            outcome.write(run_dir, "running_elsewhere")
        say("skipped: another live job runs this cell and writes its record")
        return
    skipped = bool(record.get("skipped"))
    if multirun:
        outcome.write(run_dir, "skipped" if skipped else "completed")
    if skipped:
        say("skipped: already completed with this config (rerun=true recomputes it)")
        return
    summary = format_summary(record)
    if summary and (not multirun or cfg.verbose):
        print(summary)
    elif summary:
        job_log.log_only(summary)
    say(f"{ended_line(record)}  [record: {run_dir}/metrics.json]" if multirun else f"record: {run_dir}/metrics.json")


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    multirun = hc.mode == RunMode.MULTIRUN
    with job_log.teed(run_dir):
        if multirun:
            outcome.clear(run_dir)
            if not cfg.verbose:
                job_log.quiet_console()
            n = job_count(Path(hc.sweep.dir))
            print(f"job {hc.job.num + 1}/{n if n else '?'}: {' '.join(hc.overrides.task)}", flush=True)
        one_job(cfg, run_dir, hc, multirun)


if __name__ == "__main__":
    sys.argv = quote_paths(multirun_first(sys.argv))
    main()
