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
import os
import re
import shutil
import subprocess
import tempfile
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import duckdb
import pymysql

try:
    import fcntl
except ImportError:  # not on Windows; only used to widen the pipe
    fcntl = None

from civimc_audit.civicrm.stream import Field, TableRead
from civimc_audit.config import CiviCRMSettings
from civimc_audit.errors import ClientUnavailable

PIECE_BYTES = 32 << 20  # a section's output is loaded in files of about this size
MAX_WAITING = 3  # pieces written but not loaded yet before the reader waits for DuckDB
READ_BYTES = 4 << 20
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
    return f"SELECT {', '.join(cols)} FROM {read.source} WHERE {read.where}"


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


class _Loader:
    """Loads the files of one read into its store table, one INSERT per file."""

    def __init__(self, duck: duckdb.DuckDBPyConnection, read: TableRead, target: str,
                 constants: dict[str, int]):
        spec = ", ".join(f"'{n}': '{t}'" for n, t in _columns(read))
        names = [f.name for f in read.fields]
        typed = ", ".join(_typed(f, read) for f in read.fields)
        self.duck = duck
        self.sql = (f"INSERT INTO {target} ({', '.join([*constants, *names])})"
                    f" SELECT {', '.join([*(str(int(v)) for v in constants.values()), typed])}"
                    " FROM read_csv($path, delim = '\t', quote = '', escape = '',"
                    " header = false, nullstr = 'NULL', auto_detect = false,"
                    f" columns = {{{spec}}})")

    def load(self, path: str) -> int:
        try:
            return self.duck.execute(self.sql, {"path": path}).fetchone()[0]
        finally:
            os.unlink(path)


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


def dump_tables(client: str, settings: CiviCRMSettings, duck: duckdb.DuckDBPyConnection,
                reads: list[TableRead], statements: list[str], *, session: list[str],
                constants: dict[str, int], progress_bar=None,
                on_chunk: Callable[[str, int], None] | None = None) -> dict[str, int]:
    """Run `statements` (the rendered SELECT of each read, in order) in one client session
    after the `session` statements, loading each result into the store table named like its
    read; returns the rows loaded per table. `on_chunk(table, rows so far)` is called as output
    arrives."""
    for r in reads:  # header lines are told from data lines by this (see the read loop)
        first = r.fields[0]
        if (first.name, first.kind, first.nullable) != ("id", "int", False):
            raise ValueError(f"{r.name}: a dumped read must start with its NOT NULL integer id")
    script = ";\n".join(["SET NAMES utf8mb4", *session,
                         "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
                         *statements, "COMMIT"]) + ";\n"
    headers = [("\t".join(n for n, _ in _columns(r)) + "\n").encode() for r in reads]
    loaders = [_Loader(duck, r, r.name, constants) for r in reads]
    counts = {r.name: 0 for r in reads}
    lines = dict.fromkeys(counts, 0)
    # Only what the client needs: no MYSQL_HOST/MYSQL_TCP_PORT, no other secrets, no HOME (an
    # Oracle client reads ~/.mylogin.cnf even with --no-defaults).
    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C",
           "MYSQL_PWD": settings.password}
    with tempfile.TemporaryDirectory(prefix="civimc-civicrm-") as folder, \
            tempfile.TemporaryFile() as errors, \
            ThreadPoolExecutor(1, thread_name_prefix="civicrm-load") as worker:
        proc = subprocess.Popen(_client_command(client, settings), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=errors, env=env)
        if hasattr(fcntl, "F_SETPIPE_SZ"):  # Linux: fewer, larger pipe reads
            with contextlib.suppress(OSError):
                fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        waiting: deque = deque()
        k, out, pieces = -1, None, 0

        def hand_over() -> None:
            nonlocal out
            if out is None:
                return
            out.close()
            while len(waiting) >= MAX_WAITING:
                table, fut = waiting.popleft()
                counts[table] += fut.result()
            waiting.append((reads[k].name, worker.submit(loaders[k].load, out.name)))
            out = None

        try:
            try:
                proc.stdin.write(script.encode())
                proc.stdin.close()
            except BrokenPipeError:  # it gave up at once: its exit status and stderr say why
                pass
            carry = b""
            while True:
                chunk = proc.stdout.read1(READ_BYTES)
                buf = carry + chunk
                cut = buf.rfind(b"\n") + 1 if chunk else len(buf)
                part, carry = buf[:cut], buf[cut:]
                while part:
                    nxt = headers[k + 1] if k + 1 < len(headers) else None
                    if nxt is not None and part.startswith(nxt):
                        hand_over()
                        k += 1
                        part = part[len(nxt):]
                        if on_chunk:
                            on_chunk(reads[k].name, 0)
                        continue
                    if k < 0:
                        raise ValueError("the mysql client's output did not start with the "
                                         "expected columns")
                    # Data lines start with the integer id, header lines with a letter.
                    pos = part.find(b"\n" + nxt) + 1 if nxt is not None else 0
                    body, part = (part[:pos], part[pos:]) if pos > 0 else (part, b"")
                    if b"\r" in body:  # DuckDB's CSV reader takes a bare CR for a line end
                        body = body.replace(b"\r", b"\\r")
                    if out is None:
                        pieces += 1
                        out = open(os.path.join(folder, f"{pieces}.tsv"), "wb")  # noqa: SIM115
                    out.write(body)
                    n = body.count(b"\n")
                    lines[reads[k].name] += n
                    if progress_bar is not None:
                        progress_bar.update(n)
                    if on_chunk:
                        on_chunk(reads[k].name, lines[reads[k].name])
                    if out.tell() >= PIECE_BYTES:
                        hand_over()
                if not chunk:
                    break
            if proc.wait() != 0:
                errors.seek(0)
                raise _failure(errors.read().decode("utf-8", "replace"), proc.returncode, k >= 0)
            if k != len(reads) - 1:
                raise ValueError("the mysql client's output ended before every table was read")
            hand_over()
            while waiting:
                table, fut = waiting.popleft()
                counts[table] += fut.result()
        except BaseException:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if out is not None:
                out.close()
            for _, fut in waiting:  # loads in flight finish before the folder goes
                fut.cancel()
                with contextlib.suppress(BaseException):  # the first failure is the one raised
                    fut.result()
            raise
    for r in reads:
        if counts[r.name] != lines[r.name]:
            raise ValueError(f"{r.name}: loaded {counts[r.name]} rows of {lines[r.name]} sent")
    return counts
