"""``python -m reports DIR [DIR ...] [--out DIR] [--format md,tex,csv,png]``."""

from __future__ import annotations

import argparse
import sys

from reports.report import FORMATS, build_report, markdown_report, parse_formats, write_report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m reports",
        description="Collect run records (metrics.json) from run or multirun folders and write the paper's "
        "tables (S2-S7, C.1, C.4) beside the paper's numbers, per-class tables and figures.",
    )
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="run or multirun folders, scanned recursively")
    parser.add_argument("--out", default="reports/out", help="output folder (default: reports/out)")
    parser.add_argument(
        "--format",
        default=",".join(FORMATS),
        help=f"comma-separated outputs among {','.join(FORMATS)} (default: all)",
    )
    parser.add_argument(
        "--maps",
        type=int,
        default=6,
        metavar="N",
        help="anomaly-map figures for at most N runs that kept maps (default: 6)",
    )
    parser.add_argument("--per-class", action="store_true", help="also print the per-class tables")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        formats = parse_formats(args.format)
        report = build_report(args.dirs)
    except (ValueError, FileNotFoundError) as exc:
        print(f"reports: {exc}", file=sys.stderr)
        return 2
    if report.frame.empty:
        print(f"reports: no metrics.json under {', '.join(args.dirs)}", file=sys.stderr)
        return 1
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="replace")
    written = write_report(report, args.out, formats, max_map_runs=args.maps)
    print(markdown_report(report, per_class=args.per_class))
    if report.per_class and not args.per_class:
        print(f"({len(report.per_class)} per-class table(s) in the written tables; --per-class prints them)")
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
