"""LaTeX through pandas' Styler: booktabs rules, the best value per column in bold, a caption.

The output is plain ASCII (Unicode signs become LaTeX commands), so it compiles with pdflatex in a
minimal ``article`` with ``booktabs`` and nothing else (:func:`latex_document`).
"""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

from reports.grid import Grid

_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "|": r"\textbar{}",
}
_UNICODE = {
    "±": r"$\pm$",
    "—": "---",
    "–": "--",
    "−": "$-$",
    "✓": r"$\surd$",
    "Δ": r"$\Delta$",
    "×": r"$\times$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "…": r"\ldots{}",
    "·": r"$\cdot$",
    "’": "'",
    "‘": "`",
    "“": "``",
    "”": "''",
    "→": r"$\rightarrow$",
    "⚠": "(!)",
    "†": r"$^\dagger$",
    "‡": r"$^\ddagger$",
}
BOLD = "textbf:--rwrap;"
PREAMBLE = "\\documentclass{article}\n\\usepackage{booktabs}\n"


def tex_escape(text) -> str:
    """Escape LaTeX's special characters and turn the Unicode signs the tables use into ASCII LaTeX."""
    out = []
    for ch in str(text):
        if ch in _SPECIAL:
            out.append(_SPECIAL[ch])
        elif ch in _UNICODE:
            out.append(_UNICODE[ch])
        elif ord(ch) < 128:
            out.append(ch)
        else:
            ascii_ = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
            out.append("".join(_SPECIAL.get(c, c) for c in ascii_) or "?")
    return "".join(out)


def _minus(cell: str) -> str:
    """A negative number gets a real minus sign (a lone "-", the paper's "not used" mark, stays)."""
    cell = re.sub(r"^-(?=\d)", "$-$", cell)
    return "{}" + cell if cell.startswith("[") else cell  # a row's "[" would be read as \\[length]


def label_of(key: str) -> str:
    return "tab:" + re.sub(r"[^A-Za-z0-9.:-]+", "-", key).strip("-")


def grid_latex(grid: Grid) -> str:
    """One ``table`` float: Styler.to_latex with booktabs rules, ``\\textbf`` on the best cells, a caption."""
    columns = [_minus(tex_escape(c)) for c in grid.columns]
    if len(set(columns)) != len(columns):
        raise ValueError(f"{grid.key}: duplicated column labels {columns}")
    body = pd.DataFrame(
        [[_minus(tex_escape(c)) for c in row] for row in grid.rows], columns=columns, dtype=object
    )
    marks = pd.DataFrame("", index=body.index, columns=body.columns)
    for i, j in grid.bold:
        marks.iat[i, j] = BOLD
    styler = body.style.hide(axis="index").apply(lambda _: marks, axis=None)
    column_format = "l" * grid.n_label_columns + "r" * (len(columns) - grid.n_label_columns)
    latex = styler.to_latex(
        column_format=column_format,
        position="htbp",
        position_float="centering",
        hrules=True,
        label=label_of(grid.key),
        caption=tex_escape(grid.caption),
    )
    size = "\\footnotesize" if len(columns) > 7 else "\\small"
    latex = latex.replace("\\centering\n", f"\\centering\n{size}\n", 1)
    if grid.notes:
        lines = []
        for note in grid.notes:
            note = note.replace("`", "")
            lines.append("\\quad -- " + tex_escape(note[4:]) if note.startswith("  - ") else tex_escape(note))
        notes = "\\\\\n".join(lines)
        latex = latex.replace(
            "\\end{table}",
            "\\par\\smallskip\n{\\scriptsize\\raggedright\n" + notes + "\\par}\n\\end{table}",
            1,
        )
    return latex


def latex_document(grids: list[Grid], title: str = "UniAD Bench results", per_page: int = 4) -> str:
    """A complete document: ``article`` + ``booktabs`` only; a ``\\clearpage`` every few floats."""
    parts = [PREAMBLE, "\\begin{document}\n", f"\\section*{{{tex_escape(title)}}}\n"]
    for index, grid in enumerate(grids):
        parts.append(grid_latex(grid))
        if (index + 1) % per_page == 0 and index + 1 < len(grids):
            parts.append("\\clearpage\n")
    parts.append("\\end{document}\n")
    return "\n".join(parts)
