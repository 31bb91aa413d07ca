"""Markdown pipe tables, as ``DataFrame.to_markdown(index=False, disable_numparse=True)``
writes them, without tabulate's per-cell type inference.

A report over hundreds of cases renders one table per case; tabulate spent more
time on them than the report's other work together (``nox -s bench``), and that
serial time is what limits the speed-up of ``gradparity run --workers``. Tables
whose cells are all one-line strings are formatted here, byte-identical to
tabulate (a test holds them equal); anything else goes to tabulate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

HEADER_PADDING = 2  # tabulate widens every column to at least its header + 2


def markdown_table(frame: pd.DataFrame) -> str:
    """The table as Markdown: a header row, an alignment row, one row per frame row."""
    columns = [str(column) for column in frame.columns]
    rows = frame.to_numpy(dtype=object).tolist()
    if not _plain(columns, rows):
        return frame.to_markdown(index=False, disable_numparse=True)
    return _formatted(columns, rows)


def markdown_rows(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """``markdown_table(pd.DataFrame(rows, columns=columns))`` without building the
    frame: a report renders one such table per case, and building hundreds of small
    frames cost more than formatting them."""
    columns, rows = [str(column) for column in columns], [list(row) for row in rows]
    if not _plain(columns, rows):
        return markdown_table(pd.DataFrame(rows, columns=columns))
    return _formatted(columns, rows)


def _plain(columns: list[str], rows: list[list[Any]]) -> bool:
    """Whether every cell is a one-line printable string (formatted here, else by
    tabulate)."""
    return (bool(rows) and all(column.isprintable() for column in columns)
            and all(isinstance(cell, str) and "\n" not in cell and cell.isprintable()
                    for row in rows for cell in row))


def _formatted(columns: list[str], rows: list[list[str]]) -> str:
    # tabulate strips the whitespace around every cell (not around headers)
    rows = [[cell.strip() for cell in row] for row in rows]
    widths = [max(len(column) + HEADER_PADDING, *(len(row[i]) for row in rows))
              for i, column in enumerate(columns)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(columns), "|" + "|".join(":" + "-" * (w + 1) for w in widths) + "|",
                      *(line(row) for row in rows)])
