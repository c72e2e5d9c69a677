"""Moving many rows from MariaDB/MySQL into DuckDB quickly, through an ordinary SELECT account.

A row-by-row pymysql cursor spends its time building one Python tuple per row (about 8 times
slower than `mysql --batch`). Here the server packs a key range of rows into one text value
(GROUP_CONCAT of tab-separated fields: numbers as digits, strings as HEX of their UTF-8 bytes, so
no value can break the framing and every byte survives), the client receives a few large values,
pyarrow's CSV reader parses each in C, and DuckDB decodes and types the columns. No per-row
Python object is made, and the work stays inside the caller's transaction (one consistent
snapshot).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
from tqdm.auto import tqdm

# The NULL marker: hex digits, numbers and dates never spell it. Separators are written as
# CHAR(9)/CHAR(10) so the SQL means the same under sql_mode NO_BACKSLASH_ESCAPES.
NULL = "N"


@dataclass(frozen=True)
class Field:
    """One output column: its name, the SQL expression that reads it (None: the site's schema
    has no such column, so it is NULL) and its kind: 'int', 'bool', 'text' or 'time'."""

    name: str
    expr: str | None
    kind: str

    def packed(self) -> str:
        """The expression as it travels inside the packed text."""
        if self.expr is None:
            return f"'{NULL}'"
        if self.kind == "text":
            return f"IFNULL(HEX(CONVERT({self.expr} USING utf8mb4)), '{NULL}')"
        if self.kind == "time":
            return f"IFNULL(CAST({self.expr} AS CHAR(19)), '{NULL}')"
        return f"IFNULL(({self.expr}) + 0, '{NULL}')"

    def plain(self) -> str:
        return f"{self.expr if self.expr is not None else 'NULL'} AS {self.name}"

    def typed(self, time_zone: str | None = None) -> str:
        """DuckDB expression turning the packed text column back into a typed value."""
        col = f'"{self.name}"'
        if self.kind == "text":
            return f"decode(unhex({col})) AS {col}"
        if self.kind == "bool":
            return f"(CAST({col} AS INTEGER) <> 0) AS {col}"
        if self.kind == "time":
            ts = f"TRY_CAST({col} AS TIMESTAMP)"
            # A DATETIME holding local wall-clock time → the UTC instant. A time inside the
            # repeated hour of a DST fall-back is ambiguous there; it is read as the later one.
            if time_zone:
                ts = f"timezone('UTC', timezone('{time_zone}', {ts}))"
            return f"{ts} AS {col}"
        return f"CAST({col} AS BIGINT) AS {col}"


@dataclass(frozen=True)
class TableRead:
    """What to read from one table (`alias` names it in `where` and the field expressions):
    chunked on the integer primary key `id`; `where` may hold %(name)s parameters;
    `bounded` says the key range may be computed with the filter (cheap through an index)."""

    name: str
    alias: str
    where: str
    fields: tuple[Field, ...]
    time_zone: str | None = None  # for 'time' fields that are local DATETIMEs
    bounded: bool = False

    @property
    def source(self) -> str:
        return f"{self.name} {self.alias}"

    def plain_sql(self) -> str:
        """The same rows and columns as one ordinary SELECT (for baselines and debugging)."""
        cols = ", ".join(f.plain() for f in self.fields)
        return f"SELECT {cols} FROM {self.source} WHERE {self.where}"


def stream_table(cur, duck: duckdb.DuckDBPyConnection, read: TableRead, target: str,
                 params: dict, *, max_bytes: int, progress: bool = False,
                 on_chunk: Callable[[str, int], None] | None = None,
                 first_span: int = 20_000) -> int:
    """Copy the rows of `read` into the DuckDB table `target` (created here); returns the count.

    Chunks are key ranges sized to stay well under `max_bytes` (the session's
    group_concat_max_len); a chunk that still overflows is split and read again. `on_chunk`
    is called with (table, rows so far) after each chunk.
    """
    key = f"{read.alias}.id"
    if read.bounded:
        cur.execute(f"SELECT MIN({key}), MAX({key}) FROM {read.source} WHERE {read.where}", params)
    else:
        cur.execute(f"SELECT MIN(id), MAX(id) FROM {read.name}")
    low, high = cur.fetchone()
    names = [f.name for f in read.fields]
    typed = ", ".join(f.typed(read.time_zone) for f in read.fields)
    duck.execute(f"CREATE OR REPLACE TEMP TABLE {target} AS SELECT {typed} FROM "
                 f"(SELECT {', '.join(f'NULL::VARCHAR AS {n}' for n in names)}) WHERE false")
    if low is None:
        return 0
    packed = ", ".join(f.packed() for f in read.fields)
    sql = (f"SELECT COUNT(*), CAST(GROUP_CONCAT(CONCAT(CONCAT_WS(CHAR(9), {packed}), CHAR(10))"
           " SEPARATOR '') AS BINARY)"
           f" FROM {read.source} WHERE ({read.where})"
           f" AND {key} >= %(_lo)s AND {key} < %(_hi)s")
    options = (pacsv.ReadOptions(column_names=names, block_size=1 << 26),
               pacsv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False),
               pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                    null_values=[NULL], strings_can_be_null=True))
    target_bytes = max_bytes // 3
    total, start, span = 0, low, first_span
    with tqdm(total=high - low + 1, desc=f"CiviCRM {read.name}", unit="id", unit_scale=True,
              disable=not progress, leave=False) as bar:
        while start <= high:
            end = min(start + span, high + 1)
            cur.execute(sql, {**params, "_lo": start, "_hi": end})
            count, blob = cur.fetchone()
            blob = blob or b""
            if count and (len(blob) >= max_bytes or blob.count(b"\n") != count):
                if end - start <= 1:
                    raise ValueError(f"one row of {read.name} is larger than {max_bytes} bytes")
                span = max(1, (end - start) // 4)  # overflowed: read this range again, smaller
                continue
            if count:
                table = pacsv.read_csv(io.BytesIO(blob), *options)
                duck.register("_chunk", table)
                duck.execute(f"INSERT INTO {target} SELECT {typed} FROM _chunk")
                duck.unregister("_chunk")
                total += count
            bar.update(end - start)
            if on_chunk:
                on_chunk(read.name, total)
            # Size the next range from this one's bytes per key.
            per_key = max(len(blob), 1) / (end - start)
            span = int(min(max(target_bytes / per_key, 1_000), 2_000_000))
            start = end
    return total
