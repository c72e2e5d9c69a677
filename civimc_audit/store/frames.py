"""Inserting a DataFrame or Arrow table into a store table: the one way the code does it."""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from civimc_audit.store.database import scalar

#: The name a frame is registered under while it is inserted (a view of that connection only).
FRAME = "_frame"


def insert_frame(con: duckdb.DuckDBPyConnection, table: str, frame, columns: Sequence[str] = (),
                 *, select: str = "*", params=None) -> int:
    """`INSERT INTO table (columns) SELECT select FROM frame`; returns the rows inserted.

    `frame` is a pandas DataFrame or an Arrow table, registered as a view of `con` for the one
    statement and unregistered after (also when it fails), so it is never read once it is gone.
    `select` may name the frame's columns and hold constants or `?`/`$name` parameters
    (`params`); `columns` are the table's columns it fills, in order (all of them if empty)."""
    into = f"{table} ({', '.join(columns)})" if columns else table
    con.register(FRAME, frame)
    try:
        return scalar(con, f"INSERT INTO {into} SELECT {select} FROM {FRAME}", params)
    finally:
        con.unregister(FRAME)
