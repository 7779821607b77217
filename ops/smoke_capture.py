"""Capture every experiment's smoke sweep as comparable text: ``python ops/smoke_capture.py OUT``.

For a refactoring that must change nothing a user sees: each ``conf/experiment`` table is swept at
``profile=smoke`` (one seed, one epoch, four training images) in a scratch folder, then each run
record is written without what differs between two identical runs (timing, provenance, the scratch
folder's path) beside the tables ``python -m reports`` renders from the sweep. Capture before and
after a change, then ``diff -r before after``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ["profile=smoke", "data.generator.n_train=4", "trainer.epochs=1", "seed=1"]
DROP = {"timing", "env", "run_dir"}  # what two identical runs do not share
SECONDS = re.compile(r"(_s|_per_s)$")


def _clean(value, scratch: str):
    if isinstance(value, dict):
        return {k: _clean(v, scratch) for k, v in value.items() if k not in DROP and not SECONDS.search(k)}
    if isinstance(value, list):
        return [_clean(v, scratch) for v in value]
    if isinstance(value, str):
        return value.replace(scratch, "<scratch>")
    return value


def capture(experiment: str, out: Path) -> None:
    scratch = tempfile.mkdtemp(prefix=f"capture-{experiment}-")
    try:
        env = {**os.environ, "UNIAD_BENCH_DATA": f"{scratch}/datasets", "UNIAD_BENCH_CACHE": f"{scratch}/cache"}
        sweep = Path(scratch) / "sweep"
        proc = subprocess.run([sys.executable, "-m", "bench", "-m", f"+experiment={experiment}", *TINY,
                               f"hydra.sweep.dir={sweep}"], cwd=ROOT, env=env, capture_output=True, text=True)
        dest = out / experiment
        dest.mkdir(parents=True, exist_ok=True)
        (dest / "exit.txt").write_text(f"bench exit {proc.returncode}\n")
        for path in sorted(sweep.rglob("metrics.json")):
            name = str(path.parent.relative_to(sweep)).replace("/", "__")
            record = _clean(json.loads(path.read_text()), scratch)
            (dest / f"{name}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        report = Path(scratch) / "report"
        rep = subprocess.run([sys.executable, "-m", "reports", str(sweep), "--out", str(report),
                              "--format", "md,tex,csv"], cwd=ROOT, capture_output=True, text=True)
        (dest / "report_exit.txt").write_text(f"reports exit {rep.returncode}\n")
        for path in sorted(report.glob("*")) if report.is_dir() else []:
            if path.is_file():
                (dest / f"report_{path.name}").write_text(path.read_text().replace(scratch, "<scratch>"))
        print(f"{experiment}: bench exit {proc.returncode}, reports exit {rep.returncode}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "smoke-capture")
    names = argv[1:] or sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    for name in names:
        capture(name, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
