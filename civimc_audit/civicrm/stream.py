"""Moving many rows from MariaDB/MySQL into DuckDB quickly, through an ordinary SELECT account.

A row-by-row pymysql cursor spends its time building one Python tuple per row (about 8 times
slower than `mysql --batch`). Here the server packs a key range of rows into one text value
(GROUP_CONCAT of tab-separated fields: numbers as digits, strings as their UTF-8 bytes in double
quotes with inner quotes doubled, so no tab, newline or quote in a value can break the framing
and every byte survives), the client receives a few large values, pyarrow's CSV reader parses
each in C, and DuckDB types the columns. No per-row Python object is made, and the work stays
inside the caller's transaction (one consistent snapshot).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from civimc_audit.common.progress import progress_bar
from civimc_audit.store.frames import insert_frame
from civimc_audit.store.loading import ChunkLoader, Load

if TYPE_CHECKING:
    import pyarrow as pa

# The NULL marker, unquoted: numbers and dates never spell it and strings are always quoted.
# Separators are written as CHAR(9)/CHAR(10) so the SQL means the same under sql_mode
# NO_BACKSLASH_ESCAPES.
NULL = "N"


@dataclass(frozen=True)
class Field:
    """One output column: its name, the SQL expression that reads it (None: the site's schema
    has no such column, so it is NULL), its kind ('int', 'bool', 'text' or 'time'), whether it
    can be NULL, and whether a text column must be converted to UTF-8 first (not utf8/utf8mb4)."""

    name: str
    expr: str | None
    kind: str
    nullable: bool = True
    convert: bool = True

    def packed(self) -> str:
        """The expression as it travels inside the packed text. Every function call costs
        server time on millions of rows, so NOT NULL columns skip IFNULL and UTF-8 columns skip
        CONVERT; numbers and dates go as MariaDB prints them. Quoted strings are cast to BINARY
        so columns of different collations can be packed together."""
        if self.expr is None:
            return f"'{NULL}'"
        value = self.expr
        if self.kind == "text":
            if self.convert:
                value = f"CONVERT({value} USING utf8mb4)"
            value = f"CAST(CONCAT('\"', REPLACE({value}, '\"', '\"\"'), '\"') AS BINARY)"
        return f"IFNULL({value}, '{NULL}')" if self.nullable else value

    @property
    def arrow_type(self) -> pa.DataType:
        """How pyarrow's CSV reader parses the packed column (numbers natively, in C)."""
        import pyarrow as pa  # only this transport needs it, and it is slow to import

        return {"int": pa.int64(), "bool": pa.int8()}.get(self.kind, pa.string())

    def typed(self, time_zone: str | None = None) -> str:
        """DuckDB expression turning the packed text column back into a typed value."""
        col = f'"{self.name}"'
        if self.kind == "bool":
            return f"({col} <> 0) AS {col}"
        if self.kind == "time":
            ts = f"TRY_CAST({col} AS TIMESTAMP)"
            # A DATETIME holding local wall-clock time → the UTC instant. A time inside the
            # repeated hour of a DST fall-back is ambiguous there; it is read as the later one.
            if time_zone:
                ts = f"timezone('UTC', timezone('{time_zone}', {ts}))"
            return f"{ts} AS {col}"
        return f"{col}"


@dataclass(frozen=True)
class TableRead:
    """What to read from one table (`alias` names it in `where` and the field expressions):
    chunked on the integer primary key `id`; `where` may hold %(name)s parameters;
    `bounded` says the key range may be computed with the filter (cheap through an index).
    `index` names the index a filtered read goes through: InnoDB secondary indexes end with the
    primary key, so `group_id = g AND id BETWEEN a AND b` is one short range of the group_id
    index, where the optimizer's own choice would rescan the whole group for every chunk."""

    name: str
    alias: str
    where: str
    fields: tuple[Field, ...]
    time_zone: str | None = None  # for 'time' fields that are local DATETIMEs
    bounded: bool = False
    index: str | None = None      # index to read key ranges through (e.g. (group_id, id))

    @property
    def source(self) -> str:
        hint = f" FORCE INDEX (`{self.index}`)" if self.index else ""
        return f"{self.name} {self.alias}{hint}"


def stream_table(cur, duck: duckdb.DuckDBPyConnection, read: TableRead, target: str,
                 params: dict, *, max_bytes: int, constants: dict[str, int] | None = None,
                 create: bool = False, progress: bool = False,
                 on_chunk: Callable[[str, int], None] | None = None,
                 first_span: int = 20_000) -> int:
    """Copy the rows of `read` into the DuckDB table `target`; returns the count.

    `constants` are extra integer columns written on every row (the snapshot id); `create`
    makes `target` a new temp table first. Chunks are key ranges sized to stay well under
    `max_bytes` (the session's group_concat_max_len); a chunk that still overflows is read again
    in smaller ranges. While the server packs the next chunk, a worker thread parses and inserts
    the previous one (both sides release the GIL), so the two overlap; the inserts run on `duck`
    in its own (the caller's) transaction, see ChunkLoader. `on_chunk` is called with
    (table, rows so far) after each chunk.
    """
    low, high = _key_range(cur, read, params)
    if create:
        _create_target(duck, read, target)
    if low is None or high is None:  # MIN and MAX are NULL together: no rows
        return 0
    consts = constants or {}
    total = 0
    # One chunk waits for the worker while it loads another, so neither side idles when the
    # other has a slow chunk.
    with ChunkLoader([duck], _unpacker(read, target, consts), max_waiting=1, commit=False,
                     name="civicrm-load") as loader, \
            progress_bar(progress, total=high - low + 1, desc=f"CiviCRM {read.name}", unit="id",
                         unit_scale=True) as bar:
        for count, blob, keys in _packed_chunks(cur, read, params, low, high,
                                                max_bytes=max_bytes, first_span=first_span):
            if count:
                loader.put((blob, count))
                total += count
            bar.update(keys)
            if on_chunk:
                on_chunk(read.name, total)
        loader.close()
    return total


def _key_range(cur, read: TableRead, params: dict) -> tuple[int | None, int | None]:
    key = f"{read.alias}.id"
    if read.bounded:
        cur.execute(f"SELECT MIN({key}), MAX({key}) FROM {read.source} WHERE {read.where}", params)
    else:
        cur.execute(f"SELECT MIN(id), MAX(id) FROM {read.name}")
    return cur.fetchone()


def _create_target(duck: duckdb.DuckDBPyConnection, read: TableRead, target: str) -> None:
    """`target` as a new, empty temp table of the read's typed columns."""
    sql_type = {"int": "BIGINT", "bool": "TINYINT"}
    typed = ", ".join(f.typed(read.time_zone) for f in read.fields)
    empty = ", ".join(f"NULL::{sql_type.get(f.kind, 'VARCHAR')} AS {f.name}" for f in read.fields)
    duck.execute(f"CREATE OR REPLACE TEMP TABLE {target} AS SELECT {typed} FROM "
                 f"(SELECT {empty}) WHERE false")


def _packed_chunks(cur, read: TableRead, params: dict, low: int, high: int, *, max_bytes: int,
                   first_span: int):
    """(rows, packed text, keys spanned) of each key range of `read` from `low` to `high`,
    packed by the server. Each range is sized from the bytes per key of the one before to a
    third of `max_bytes`; one that overflows (GROUP_CONCAT cuts it short) is read again as a
    quarter of its size."""
    key = f"{read.alias}.id"
    packed = ", ".join(f.packed() for f in read.fields)
    sql = (f"SELECT COUNT(*), CAST(GROUP_CONCAT(CONCAT(CONCAT_WS(CHAR(9), {packed}), CHAR(10))"
           " SEPARATOR '') AS BINARY)"
           f" FROM {read.source} WHERE ({read.where})"
           f" AND {key} >= %(_lo)s AND {key} < %(_hi)s")
    target_bytes = max_bytes // 3
    start, span = low, first_span
    while start <= high:
        end = min(start + span, high + 1)
        cur.execute(sql, {**params, "_lo": start, "_hi": end})
        count, blob = cur.fetchone()
        blob = blob or b""
        if len(blob) >= max_bytes:
            if end - start <= 1:
                raise ValueError(f"one row of {read.name} is larger than {max_bytes} bytes")
            span = max(1, (end - start) // 4)
            continue
        yield count, blob, end - start
        per_key = max(len(blob), 1) / (end - start)
        span = int(min(max(target_bytes / per_key, 1_000), 2_000_000))
        start = end


def _unpacker(read: TableRead, target: str, constants: dict[str, int]) -> Load:
    """Loads chunks of packed text: pyarrow's CSV reader parses each (in C, on the loader's
    thread) and DuckDB types and inserts its columns into `target`."""
    import pyarrow.csv as pacsv

    names = [f.name for f in read.fields]
    select = ", ".join([*(str(int(v)) for v in constants.values()),
                        *(f.typed(read.time_zone) for f in read.fields)])
    options = (pacsv.ReadOptions(column_names=names, block_size=1 << 26),
               pacsv.ParseOptions(delimiter="\t", quote_char='"', double_quote=True,
                                  escape_char=False, newlines_in_values=True),
               pacsv.ConvertOptions(column_types={f.name: f.arrow_type for f in read.fields},
                                    null_values=[NULL], strings_can_be_null=True,
                                    quoted_strings_can_be_null=False))

    def load(duck: duckdb.DuckDBPyConnection, chunks: list) -> int:
        n = 0
        for blob, count in chunks:
            table = pacsv.read_csv(io.BytesIO(blob), *options)
            if table.num_rows != count:
                raise ValueError(f"{read.name}: a chunk unpacked to {table.num_rows} rows, "
                                 f"expected {count}")
            n += insert_frame(duck, target, table, [*constants, *names], select=select)
        return n

    return load
