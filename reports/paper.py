"""The paper's numbers (part of the declaration stage), transcribed once from the seed into each table's
declaration (the ``paper`` entry of its rows in ``conf/experiment/*.yaml``, see :mod:`reports.declaration`).

Columns: ``table`` (S2 … S7, C.1, C.4), ``row`` (the row id of the declaration),
``metric`` (``image_auroc``/``pixel_auroc`` in percent, ``gflops`` in G, ``*_params_m`` in millions),
``value``, ``unit``, ``source`` (where in the seed, or another document, the number comes from) and
``text`` (the number as printed).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports.declaration import TableSpec, metric_spec, table_specs

COLUMNS = ("table", "row", "metric", "value", "unit", "source")


def load_paper(path: str | Path | None = None) -> pd.DataFrame:
    """The paper's numbers of every declared table (or of a CSV with :data:`COLUMNS`, when given)."""
    if path is None:
        frame = paper_frame()
    else:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        missing = [c for c in COLUMNS if c not in frame.columns]
        if missing:
            raise ValueError(f"{path}: missing columns {missing}")
        frame["text"] = frame["value"].str.strip()  # as printed ("19" stays "19", not "19.0")
        frame["value"] = pd.to_numeric(frame["text"], errors="raise").astype(float)
    duplicated = frame.duplicated(["table", "row", "metric"])
    if duplicated.any():
        raise ValueError(
            f"duplicated paper numbers: {frame[duplicated][['table', 'row', 'metric']].values.tolist()}"
        )
    return frame


def paper_frame(specs: tuple[TableSpec, ...] | None = None) -> pd.DataFrame:
    """The paper's numbers of every table, long form: table, row, metric, value, unit, source, text."""
    lines = []
    for spec in specs if specs is not None else table_specs():
        entries = [(r.id, r.paper, r.paper_source) for r in spec.rows]
        if spec.paper_mean:
            entries.append(("mean", spec.paper_mean, None))
        for row_id, numbers, source in entries:
            for metric, value in numbers.items():
                lines.append(
                    {
                        "table": spec.key,
                        "row": row_id,
                        "metric": metric,
                        "value": float(value),
                        "unit": metric_spec(metric).unit,
                        "source": source or spec.paper_source or "",
                        "text": str(value),
                    }
                )
    return pd.DataFrame(lines, columns=["table", "row", "metric", "value", "unit", "source", "text"])


def paper_lookup(paper: pd.DataFrame) -> dict[tuple[str, str, str], tuple[float, str, str]]:
    """``{(table, row, metric): (value, text, source)}`` for fast lookups."""
    return {
        (t, r, m): (float(v), str(x), str(s))
        for t, r, m, v, x, s in zip(
            paper["table"],
            paper["row"],
            paper["metric"],
            paper["value"],
            paper["text"],
            paper["source"],
            strict=True,
        )
    }


def paper_value(
    paper: pd.DataFrame | dict, table: str, row: str | None, metric: str
) -> tuple[float | None, str | None]:
    """``(value, source)`` of one paper cell, ``(None, None)`` when the paper has no number there."""
    lookup = paper if isinstance(paper, dict) else paper_lookup(paper)
    hit = lookup.get((table, row, metric)) if row is not None else None
    return (None, None) if hit is None else (hit[0], hit[2])


def paper_text(paper: pd.DataFrame | dict, table: str, row: str | None, metric: str) -> str | None:
    """The paper's number as printed (the CSV text), None when the paper has none."""
    lookup = paper if isinstance(paper, dict) else paper_lookup(paper)
    hit = lookup.get((table, row, metric)) if row is not None else None
    return None if hit is None else hit[1]
