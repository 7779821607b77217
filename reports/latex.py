"""LaTeX through pandas' Styler: booktabs rules, the best value per column in bold, a caption.

The output is plain ASCII (Unicode signs become LaTeX commands), so it compiles with pdflatex in an
``article`` with ``booktabs``, ``graphicx``, ``rotating`` and ``geometry`` (TeX Live's latex-base and
latex-recommended), and every table fits the page (:func:`latex_document`).
"""

from __future__ import annotations

import re
import textwrap
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
    "§": r"\S{}",
}
BOLD = "textbf:--rwrap;"
# The page: 2 cm margins (geometry); a table wider than the text at LaTeX's column padding gets half that
# padding; one still much wider goes on a page of its own, turned to landscape (rotating's sideways), where
# its line is \textheight; and any tabular still wider than its line is scaled down to it
# (graphicx), so no column falls off the page. The fitwidth environment logs each tabular's natural width
# ("fitwidth: <label> natural <w> line <l>") for checking the fit.
PREAMBLE = r"""\documentclass{article}
\usepackage{booktabs}
\usepackage{graphicx}
\usepackage{rotating}
\usepackage[margin=2cm]{geometry}
\newsavebox{\fitbox}
\newenvironment{fitwidth}[1]{\def\fitlabel{#1}\begin{lrbox}{\fitbox}}{\end{lrbox}%
\typeout{fitwidth: \fitlabel\space natural \the\wd\fitbox\space line \the\linewidth}%
\ifdim\wd\fitbox>\linewidth\resizebox{\linewidth}{!}{\usebox{\fitbox}}\else\usebox{\fitbox}\fi}
\newcommand{\stackhead}[1]{\begin{tabular}[b]{@{}r@{}}#1\end{tabular}}
"""
TEXT_WIDTH_PT = 498.0  # \textwidth of that page (US letter, 2 cm margins); its \textheight is 678 pt
TABCOLSEP_PT, TIGHT_TABCOLSEP_PT = 6.0, 3.0  # LaTeX's \tabcolsep; a wide table's (:func:`tabcolsep`)
SIDEWAYS_AT = 1.15  # a table estimated wider than this many text widths goes on a landscape page
# A landscape table: the float's content turned 90 degrees (rotating's sideways), its line \textheight long
LANDSCAPE = ("\\begin{sideways}\\begin{minipage}{\\textheight}\n", "\\end{minipage}\\end{sideways}\n")


def header_lines(grid: Grid) -> list[list[str]]:
    """Each column header as lines: a value column's header longer than its widest cell (and than 12
    characters) is broken at spaces to that width (e.g. "Stored statistics (M numbers) paper" over 3 lines),
    so headers do not set the width of a table; label columns keep theirs on one line."""
    out = []
    for j, column in enumerate(grid.columns):
        body = max((len(str(row[j])) for row in grid.rows), default=0)
        width = max(12, body)
        if j < grid.n_label_columns or len(column) <= width:
            out.append([column])
        else:
            out.append(textwrap.wrap(column, width, break_long_words=False, break_on_hyphens=False) or [column])
    return out


def natural_width(grid: Grid, padding: float = TABCOLSEP_PT) -> float:
    """The tabular's natural width in pt, estimated from its widest cell per column: 4.2 pt a character at
    \\footnotesize plus twice ``padding`` (\\tabcolsep) per column (within about 10% of pdflatex's widths on
    the paper's tables)."""
    heads = header_lines(grid)
    widths = [max([*(len(line) for line in heads[j]), *(len(str(row[j])) for row in grid.rows)])
              for j in range(len(grid.columns))]
    return 2 * padding * len(widths) + 4.2 * sum(widths)


def tabcolsep(grid: Grid) -> float:
    """The column padding of a table: LaTeX's 6 pt, halved for a table wider than the portrait line at
    that padding (many metric columns with ours, paper and Δ), so it needs less scaling or none."""
    return TIGHT_TABCOLSEP_PT if natural_width(grid) > TEXT_WIDTH_PT else TABCOLSEP_PT


def estimated_width(grid: Grid) -> float:
    """The tabular's estimated natural width at its padding (:func:`tabcolsep`). Only chooses portrait or
    landscape; the fitwidth environment measures exactly and scales a wider tabular to its line."""
    return natural_width(grid, tabcolsep(grid))


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
    columns = [
        "\\stackhead{" + "\\\\".join(_minus(tex_escape(line)) for line in lines) + "}" if len(lines) > 1 else column
        for column, lines in zip(columns, header_lines(grid), strict=True)
    ]
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
    if tabcolsep(grid) != TABCOLSEP_PT:
        size += f"\n\\setlength{{\\tabcolsep}}{{{tabcolsep(grid):g}pt}}"
    latex = latex.replace("\\centering\n", f"\\centering\n{size}\n", 1)
    latex = latex.replace("\\begin{tabular}", f"\\begin{{fitwidth}}{{{label_of(grid.key)}}}\n\\begin{{tabular}}", 1)
    latex = latex.replace("\\end{tabular}\n", "\\end{tabular}\n\\end{fitwidth}\n", 1)
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
    if estimated_width(grid) > SIDEWAYS_AT * TEXT_WIDTH_PT:
        latex = latex.replace("\\begin{table}[htbp]\n", "\\begin{table}[p]\n" + LANDSCAPE[0], 1)
        latex = latex.replace("\\end{table}", LANDSCAPE[1] + "\\end{table}", 1)
    return latex


def latex_document(grids: list[Grid], title: str = "UniAD Bench results", per_page: int = 4) -> str:
    """A complete document (``article``, :data:`PREAMBLE`); a ``\\clearpage`` every few floats."""
    parts = [PREAMBLE, "\\begin{document}\n", f"\\section*{{{tex_escape(title)}}}\n"]
    for index, grid in enumerate(grids):
        parts.append(grid_latex(grid))
        if (index + 1) % per_page == 0 and index + 1 < len(grids):
            parts.append("\\clearpage\n")
    parts.append("\\end{document}\n")
    return "\n".join(parts)
