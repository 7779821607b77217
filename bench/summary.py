"""The one-table summary printed at the end of a job."""

from __future__ import annotations


def _pct(value) -> str:
    return "—" if value is None or value != value else f"{100 * value:.1f}"


def format_summary(record: dict) -> str:
    lines = []
    metrics = record.get("metrics") or {}
    per_class = metrics.get("per_class") or {}
    if per_class:
        names = list(metrics["mean"])
        header = ["category", *names]
        rows = [[c, *(_pct(m.get(n)) for n in names)] for c, m in sorted(per_class.items())]
        rows.append(["mean", *(_pct(metrics["mean"].get(n)) for n in names)])
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        fmt = lambda r: "| " + " | ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
        lines += [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(fmt, rows)]
    cx = record.get("complexity") or {}
    if cx:
        lines.append(f"learnable params: {cx.get('learnable_params'):,}   GFLOPs: {cx.get('gflops')}")
    timing = record.get("timing") or {}
    if timing:
        lines.append("time: " + ", ".join(f"{k} {v}" for k, v in timing.items() if v is not None))
    return "\n".join(lines)
