"""Rows through the MariaDB/MySQL command-line client, when one is installed.

`mariadb --batch --quick` is the fastest way the server hands rows to another program: rows
stream in the server's own protocol while the client, in C, writes them out as tab-separated
lines. A snapshot runs one client session holding every SELECT in one consistent, read-only
transaction; its output is cut at each result's header line into files of a few MB, and DuckDB's
CSV reader parses and types each file straight into the store while the dump goes on. No row
becomes a Python object.

Batch output escapes tab, newline, backslash and NUL inside values (`\\t \\n \\\\ \\0`; carriage
returns are escaped here as `\\r`, since DuckDB's CSV reader would end a line at them) and prints
SQL NULL as `NULL`, exactly like the string 'NULL'. So a row's nullable text columns travel
with a bit mask saying which are NULL, a NOT NULL one is never NULL, and values holding a
backslash are unescaped in SQL. The password reaches the client through its environment
(MYSQL_PWD), never its command line, and option files are ignored (`--no-defaults`) so a user's
~/.my.cnf cannot change what is read.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import duckdb
import pymysql

if sys.platform != "win32":  # not on Windows; only used to widen the pipe
    import fcntl

from civimc_audit.civicrm.stream import Field, TableRead
from civimc_audit.config import CiviCRMSettings
from civimc_audit.errors import ClientUnavailable
from civimc_audit.store import scalar
from civimc_audit.store.loading import ChunkLoader, remove_files

PIECE_BYTES = 32 << 20  # a section's output is loaded in files of about this size
MAX_WAITING = 2  # pieces waiting for DuckDB (besides the one it loads) before the reader waits
READ_BYTES = 4 << 20  # the pump's buffer
FEED_BYTES = 1 << 20  # the pump cuts once this much is in (or the client pauses)
GATHER_SECONDS = 0.001  # how long the pump lets the pipe fill before it looks again
PIPE_BYTES = 1 << 20
# Client errors that mean it never got a working connection (too old for utf8mb4, an
# authentication plugin it lacks, TLS it insists on, an account allowed one connection at a
# time): the snapshot reads through the server-packed path instead. Anything after that is the
# server's answer and is reported.
CANNOT_CONNECT = {1040, 1045, 1226, 1251, 2002, 2003, 2005, 2019, 2026, 2059, 2061}
_ERROR_RE = re.compile(r"ERROR (\d+) \(\w+\)(?: at line \d+)?: (.*)")
_NULLS = "civimc_nulls"  # bit i set: the i-th nullable text field of the row is NULL



def find_client() -> str | None:
    """The MariaDB or MySQL command-line client on PATH, if any."""
    return shutil.which("mariadb") or shutil.which("mysql")


def _nullable_text(read: TableRead) -> list[Field]:
    return [f for f in read.fields if f.expr is not None and f.kind == "text" and f.nullable]


def _columns(read: TableRead) -> list[tuple[str, str]]:
    """(name, DuckDB type) of the dump's columns for `read`: its present fields, then the NULL
    mask of its nullable text fields if it has any."""
    out = [(f.name, {"int": "BIGINT", "bool": "TINYINT"}.get(f.kind, "VARCHAR"))
           for f in read.fields if f.expr is not None]
    if _nullable_text(read):
        out.append((_NULLS, "INTEGER"))
    return out


def select_sql(read: TableRead) -> str:
    """The SELECT the client runs for `read` (with %(name)s parameters)."""
    cols = [f"{f.expr} AS `{f.name}`" for f in read.fields if f.expr is not None]
    nullable = _nullable_text(read)
    if nullable:
        mask = " | ".join(f"(({f.expr} IS NULL) << {i})" for i, f in enumerate(nullable))
        cols.append(f"{mask} AS `{_NULLS}`")
    # One SELECT per table: no index hint (read.source's is for key ranges), the server's own
    # plan (a plain scan where the group holds much of the table).
    return f"SELECT {', '.join(cols)} FROM {read.name} {read.alias} WHERE {read.where}"


def _typed(f: Field, read: TableRead) -> str:
    col = f'"{f.name}"'
    if f.expr is None:
        return f"NULL AS {col}"
    if f.kind != "text":
        return f.typed(read.time_zone)
    # Undo the escapes (the client's, and ours for carriage returns): split at escaped
    # backslashes, turn \n \t \0 \r back into their characters in each part, join with
    # single backslashes.
    unescape = "s"
    for code, char in (("n", 10), ("t", 9), ("0", 0), ("r", 13)):
        unescape = f"replace({unescape}, '\\{code}', chr({char}))"
    value = (f"CASE WHEN contains({col}, '\\') THEN array_to_string(list_transform("
             f"string_split({col}, '\\\\'), lambda s: {unescape}), '\\') ELSE {col} END")
    # `NULL` in the output is SQL NULL only where the mask says so; otherwise it was 'NULL'.
    value = f"coalesce({value}, 'NULL')"
    if f.nullable:
        bit = _nullable_text(read).index(f)
        value = f"CASE WHEN ({_NULLS} >> {bit}) & 1 = 1 THEN NULL ELSE {value} END"
    return f"{value} AS {col}"


def _insert_sql(read: TableRead, target: str, constants: dict[str, int]) -> str:
    """The INSERT loading the dump files of one read (named by `$path`) into its store table."""
    spec = ", ".join(f"'{n}': '{t}'" for n, t in _columns(read))
    names = [f.name for f in read.fields]
    typed = ", ".join(_typed(f, read) for f in read.fields)
    return (f"INSERT INTO {target} ({', '.join([*constants, *names])})"
            f" SELECT {', '.join([*(str(int(v)) for v in constants.values()), typed])}"
            " FROM read_csv($path, delim = '\t', quote = '', escape = '',"
            " header = false, nullstr = 'NULL', auto_detect = false,"
            f" columns = {{{spec}}})")


def _client_command(client: str, settings: CiviCRMSettings) -> list[str]:
    # Host and protocol always explicit: the client would otherwise take MYSQL_HOST and the
    # like from its environment (option files are off, the environment is not).
    where = ([f"--socket={settings.socket}", "--host=localhost", "--protocol=SOCKET"]
             if settings.socket else
             [f"--host={settings.host}", f"--port={settings.port}", "--protocol=TCP"])
    return [client, "--no-defaults", "--batch", "--quick", "--unbuffered",
            "--default-character-set=utf8mb4",
            *where, f"--user={settings.user}", f"--database={settings.database}"]


def _failure(stderr: str, returncode: int, started: bool) -> Exception:
    """The client's error as the pymysql error it stands for (so it is reported the same way),
    or ClientUnavailable if it never connected."""
    m = None
    for line in stderr.splitlines():
        m = _ERROR_RE.search(line) or m
    if m is None:
        if not started:
            return ClientUnavailable(f"exit status {returncode}: {stderr.strip()[:200]}")
        return pymysql.err.OperationalError(2013, f"the mysql client stopped (exit status "
                                                  f"{returncode})")
    code, message = int(m.group(1)), m.group(2).strip()
    if not started and code in CANNOT_CONNECT:
        return ClientUnavailable(f"ERROR {code}: {message}")
    return pymysql.err.OperationalError(code, message)


def _check_reads(reads: list[TableRead]) -> None:
    for r in reads:  # header lines are told from data lines by this (see _Output.feed)
        first = r.fields[0]
        if (first.name, first.kind, first.nullable) != ("id", "int", False):
            raise ValueError(f"{r.name}: a dumped read must start with its NOT NULL integer id")


def _start_client(client: str, settings: CiviCRMSettings, errors) -> subprocess.Popen:
    """The client session, reading its script from `stdin` (see _send) and writing rows to
    `stdout`."""
    # Only what the client needs: no MYSQL_HOST/MYSQL_TCP_PORT, no other secrets, no HOME (an
    # Oracle client reads ~/.mylogin.cnf even with --no-defaults).
    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C",
           "MYSQL_PWD": settings.password}
    proc = subprocess.Popen(_client_command(client, settings), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=errors, env=env)
    assert proc.stdout is not None, "started with stdout=PIPE"
    if sys.platform != "win32" and hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux: fewer, larger reads
        with contextlib.suppress(OSError):
            fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    return proc


def _send(proc: subprocess.Popen, script: str) -> None:
    assert proc.stdin is not None, "started with stdin=PIPE"
    try:
        proc.stdin.write(script.encode())
        proc.stdin.close()
    except BrokenPipeError:  # it gave up at once: its exit status and stderr say why
        pass


class _Output:
    """Cuts the client's output, whole lines at a time, at each result's header line into
    files of about PIECE_BYTES, each queued on `loader` as (index of its read, path)."""

    def __init__(self, reads: list[TableRead], folder: str, loader: ChunkLoader,
                 progress_bar=None, on_chunk: Callable[[str, int], None] | None = None):
        self.reads, self.folder, self.loader = reads, folder, loader
        self.headers = [("\t".join(n for n, _ in _columns(r)) + "\n").encode() for r in reads]
        self.progress_bar, self.on_chunk = progress_bar, on_chunk
        self.lines = {r.name: 0 for r in reads}  # data lines sent, per table
        self.k = -1  # the read whose result is being output
        self.out: io.BufferedWriter | None = None  # the piece being written
        self.pieces = 0

    def feed(self, part: bytes | bytearray) -> None:
        while part:
            nxt = self.headers[self.k + 1] if self.k + 1 < len(self.headers) else None
            if nxt is not None and part.startswith(nxt):
                self.hand_over()
                self.k += 1
                part = part[len(nxt):]
                if self.on_chunk:
                    self.on_chunk(self.reads[self.k].name, 0)
                continue
            if self.k < 0:
                raise ValueError("the mysql client's output did not start with the "
                                 "expected columns")
            # Data lines start with the integer id, header lines with a letter.
            pos = part.find(b"\n" + nxt) + 1 if nxt is not None else 0
            body, part = (part[:pos], part[pos:]) if pos > 0 else (part, b"")
            self._write(body)

    def _write(self, body: bytes | bytearray) -> None:
        if b"\r" in body:  # DuckDB's CSV reader takes a bare CR for a line end
            body = body.replace(b"\r", b"\\r")
        if self.out is None:
            self.pieces += 1
            self.out = open(os.path.join(self.folder, f"{self.pieces}.tsv"), "wb")  # noqa: SIM115
        self.out.write(body)
        name = self.reads[self.k].name
        n = body.count(b"\n")
        self.lines[name] += n
        if self.progress_bar is not None:
            self.progress_bar.update(n)
        if self.on_chunk:
            self.on_chunk(name, self.lines[name])
        if self.out.tell() >= PIECE_BYTES:
            self.hand_over()

    def hand_over(self) -> None:
        """Queue the piece being written (waiting while MAX_WAITING are queued)."""
        if self.out is not None:
            out, self.out = self.out, None
            out.close()
            self.loader.put((self.k, out.name))

    def abandon(self) -> None:
        if self.out is not None:
            self.out.close()
            self.out = None


def _more_soon(fd: int) -> bool:
    """After a moment's wait, whether the client has written more (or ended): then the pump
    reads on before it cuts, rather than waking for every few kB the client writes."""
    if sys.platform == "win32":  # select does not take pipes there
        return False
    time.sleep(GATHER_SECONDS)
    return bool(select.select([fd], [], [], 0)[0])


def _pump(proc: subprocess.Popen, output: _Output) -> None:
    """Feed the client's output to `output` in whole lines until it ends.

    The output is read straight into one buffer (`read1` would make and shrink a new
    READ_BYTES object for every few kB in the pipe: half a CPU-second in page faults at a
    million contacts) and fed on once FEED_BYTES are in, or as soon as the client pauses (it
    may be waiting for a lock, and the caller watching the rows that came)."""
    stdout = proc.stdout
    assert isinstance(stdout, io.BufferedReader), "started with stdout=PIPE, buffered"
    raw = stdout.raw  # nothing was read through the buffered reader: its buffer is empty
    fd = raw.fileno()
    buf = bytearray(READ_BYTES)
    end = 0  # bytes in buf not fed yet
    while True:
        with memoryview(buf) as view:
            n = raw.readinto(view[end:]) or 0
        end += n
        if n and end < FEED_BYTES and _more_soon(fd):
            continue
        cut = buf.rfind(b"\n", 0, end) + 1 if n else end
        if n and cut == 0 and end == len(buf):  # one line longer than the buffer
            buf.extend(bytes(len(buf)))
            continue
        if cut:
            output.feed(buf[:cut])  # a copy: buf is refilled while it is written out
        end -= cut
        buf[:end] = buf[cut:cut + end]  # the unfinished line to the front (the length stays)
        if not n:
            return


def dump_tables(client: str, settings: CiviCRMSettings, duck: duckdb.DuckDBPyConnection,
                reads: list[TableRead], statements: list[str], *, session: list[str],
                constants: dict[str, int], progress_bar=None,
                on_chunk: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Run `statements` (the rendered SELECT of each read, in order) in one client session
    after the `session` statements, loading each result into the store table named like its
    read; returns the rows loaded per table. `on_chunk(table, rows so far)` is called as output
    arrives. The files load on `duck` inside the caller's transaction (see ChunkLoader)."""
    _check_reads(reads)
    script = ";\n".join(["SET NAMES utf8mb4", *session,
                         "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
                         *statements, "COMMIT"]) + ";\n"
    inserts = [_insert_sql(r, r.name, constants) for r in reads]
    counts = {r.name: 0 for r in reads}

    def load(con: duckdb.DuckDBPyConnection, pieces: list) -> int:
        n = 0
        for k, path in pieces:  # one worker: counts has no other writer
            loaded = scalar(con, inserts[k], {"path": path})
            counts[reads[k].name] += loaded
            n += loaded
        return n

    with tempfile.TemporaryDirectory(prefix="civimc-civicrm-") as folder, \
            tempfile.TemporaryFile() as errors, \
            ChunkLoader([duck], load, max_waiting=MAX_WAITING, commit=False,
                        discard=lambda pieces: remove_files(p for _, p in pieces),
                        name="civicrm-load") as loader:
        proc = _start_client(client, settings, errors)
        output = _Output(reads, folder, loader, progress_bar, on_chunk)
        try:
            _send(proc, script)
            _pump(proc, output)
            if proc.wait() != 0:
                errors.seek(0)
                raise _failure(errors.read().decode("utf-8", "replace"), proc.returncode,
                               output.k >= 0)
            if output.k != len(reads) - 1:
                raise ValueError("the mysql client's output ended before every table was read")
            output.hand_over()
            loader.close()
        except BaseException:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            output.abandon()
            raise  # the loader stops its loads before the folder goes
    for r in reads:
        if counts[r.name] != output.lines[r.name]:
            raise ValueError(f"{r.name}: loaded {counts[r.name]} rows of {output.lines[r.name]} "
                             "sent")
    return counts
