"""Inserting a DataFrame or Arrow table into a store table: the one way the code does it."""

from __future__ import annotations

import functools
import warnings
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


def query_frame(con: duckdb.DuckDBPyConnection, sql: str, params=None):
    """`sql`'s rows as a pandas DataFrame with the dtypes DuckDB's `.df()` gives, read through
    Arrow: `.df()` builds a Python object per text cell and pandas then converts each column to
    its Arrow-backed `str` again, three times the cost at a million plan items (issue 18).

    As `.df()` does: integer and boolean columns holding NULLs are pandas' nullable Int*/boolean
    (numpy ones otherwise), and a text column of NULLs only is of object dtype (None)."""
    import pandas as pd
    import pyarrow as pa

    with warnings.catch_warnings():
        # (DuckDB advises con.sql(…) to save a copy, but that refuses to run while an earlier
        # result of the connection is unfinished; the copy costs a tenth of the conversion.)
        warnings.simplefilter("ignore", UserWarning)
        table: pa.Table = con.execute(sql, params or []).to_arrow_table()
    nullable = _nullable_types()
    frame = table.to_pandas(types_mapper=nullable.get)
    for name, column in zip(table.column_names, table.columns, strict=True):
        if column.type in nullable and not column.null_count:
            frame[name] = frame[name].to_numpy(dtype=column.type.to_pandas_dtype())
        elif pa.types.is_string(column.type) and len(column) and column.null_count == len(column):
            frame[name] = pd.Series([None] * len(column), index=frame.index, dtype=object)
    return frame


@functools.cache
def _nullable_types() -> dict:
    import pandas as pd
    import pyarrow as pa

    return {pa.int8(): pd.Int8Dtype(), pa.int16(): pd.Int16Dtype(), pa.int32(): pd.Int32Dtype(),
            pa.int64(): pd.Int64Dtype(), pa.uint8(): pd.UInt8Dtype(),
            pa.uint16(): pd.UInt16Dtype(), pa.uint32(): pd.UInt32Dtype(),
            pa.uint64(): pd.UInt64Dtype(), pa.bool_(): pd.BooleanDtype()}

