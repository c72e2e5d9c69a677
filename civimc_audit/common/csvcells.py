"""Spreadsheet-safe CSV cells: the one way every CSV the toolkit writes guards its cells.

A spreadsheet runs a cell starting with `=`, `+`, `-`, `@`, a tab or a carriage return as a
formula (OWASP "CSV injection"), and names and addresses come from the public (a signup form
can carry `=HYPERLINK(...)`). Such a cell is written with a leading apostrophe, which
spreadsheets show as text. So that reading a guarded file back is exact, a value that itself
starts with an apostrophe gets one more: `restore` removes exactly one apostrophe from a cell
that starts with one followed by a formula start or another apostrophe.
"""

from __future__ import annotations

import csv

import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
GUARD = "'"
_GUARDED = (*FORMULA_STARTS, GUARD)


def defuse(value):
    """`value` as a CSV cell a spreadsheet shows as text (non-strings are returned as they are)."""
    if isinstance(value, str) and value.startswith(_GUARDED):
        return GUARD + value
    return value


def restore(value):
    """A cell `defuse` wrote back to its value."""
    if isinstance(value, str) and value.startswith(GUARD) and value[1:].startswith(_GUARDED):
        return value[1:]
    return value


def defuse_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with every string cell (and column name) defused."""
    out = frame.apply(lambda col: col.map(defuse)) if len(frame.columns) else frame.copy()
    out.columns = [defuse(c) for c in frame.columns]
    return out


def restore_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame read from a defused CSV with its cells as they were before `defuse`."""
    out = frame.apply(lambda col: col.map(restore)) if len(frame.columns) else frame.copy()
    out.columns = [restore(c) for c in frame.columns]
    return out


def frame_csv(frame: pd.DataFrame, header: bool = True) -> str:
    """`frame` as CSV text with its cells defused (no index column; `header` False for a
    chunk that follows others).

    Lines end in CRLF (RFC 4180): Python's csv module quotes a cell holding a line-ending
    character only when that character is in the line terminator, so with a bare "\n" a cell
    with a carriage return would be written unquoted and read back as two rows.
    """
    return defuse_frame(frame).to_csv(index=False, header=header, quoting=csv.QUOTE_MINIMAL,
                                      lineterminator="\r\n")


def defuse_sql(column: str) -> str:
    """The SQL expression (DuckDB) that defuses text column `column` exactly as `defuse` does,
    for CSVs DuckDB writes itself (COPY … TO); `column` must be a trusted identifier."""
    def literal(text: str) -> str:
        return "'" + text.replace("'", "''") + "'"

    starts = ", ".join(literal(c) for c in _GUARDED)
    quoted = '"' + column.replace('"', '""') + '"'
    return (f"CASE WHEN left({quoted}, 1) IN ({starts})"
            f" THEN {literal(GUARD)} || {quoted} ELSE {quoted} END")
