"""Markdown rendering of a grid (:mod:`reports.grid`): GitHub-flavoured tables with padded columns."""

from __future__ import annotations

from reports.grid import Grid


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def grid_markdown(grid: Grid) -> str:
    """A GitHub-flavoured Markdown table (padded columns, labels left, values right)."""
    header = [_md_cell(c) for c in grid.columns]
    body = [[_md_cell(c) for c in row] for row in grid.rows]
    widths = [max([len(header[j]), 3, *(len(r[j]) for r in body)]) for j in range(len(header))]
    left = [j < grid.n_label_columns for j in range(len(header))]

    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.ljust(w) if lf else c.rjust(w) for c, w, lf in zip(cells, widths, left, strict=True)
            )
            + " |"
        )

    rule = (
        "| "
        + " | ".join("-" * w if lf else "-" * (w - 1) + ":" for w, lf in zip(widths, left, strict=True))
        + " |"
    )
    return "\n".join([line(header), rule, *(line(r) for r in body)])


def grid_section(grid: Grid, level: int = 2) -> str:
    parts = [f"{'#' * level} {grid.title}", "", grid_markdown(grid), "", grid.caption]
    if grid.notes:
        parts += ["", *(n if n.startswith("  - ") else f"- {n}" for n in grid.notes)]
    return "\n".join(parts)
