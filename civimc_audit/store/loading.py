"""Chunks of rows loaded into DuckDB on worker connections while their producer makes the next.

The Mailchimp spool (JSON files of raw pages), the CiviCRM client dump (TSV files) and the
CiviCRM server-packed stream (packed text that becomes an Arrow table) all hand their chunks to
one ChunkLoader: a bounded queue and one worker thread per DuckDB connection. DuckDB releases
the GIL while it parses and inserts, so loading overlaps the producer's reading. Each connection
loads inside one transaction, and a pass ends one way whatever the chunks are:

- `close()` loads what is queued, waits for every load and commits the connections;
- a failed chunk fails the whole pass: nothing more starts, the other running loads are
  interrupted, nothing is committed, and the failure is raised by the next `put()` or `close()`;
- `close(load=False)` (the producer failed), or Ctrl-C or any other exception while closing,
  interrupts the running loads, starts none of those queued and rolls everything back;
- the connections commit one after another: should one commit fail, the rest are rolled back,
  but those before it have stored their rows, which the caller must drop (a failed snapshot's
  rows are deleted);
- no wait is unbounded: `put()` waits only while `max_waiting` chunks are queued, until a worker
  takes one or the pass fails, and stopping interrupts the running loads again until none runs
  (a further Ctrl-C does not cut that short: a load still running would keep its transaction
  and its connection busy).

With `commit=False` the connections are already inside the caller's transaction (the CiviCRM
snapshot writes all its tables and its registry row in one): the loader begins and ends nothing,
and the caller's rollback undoes a failed pass.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import duckdb

from civimc_audit.store.database import scalar
from civimc_audit.store.frames import insert_frame

#: Loads a list of chunks (one, or with `batch` every chunk queued at that moment) on a
#: connection; returns the rows it inserted.
Load = Callable[[duckdb.DuckDBPyConnection, list], int]


def file_load(sql: str, params: dict | None = None) -> Load:
    """Loads file chunks with `sql`, which reads the files its `$path` parameter names (a list:
    a batch is read in one statement) and inserts their rows."""
    params = params or {}

    def load(con: duckdb.DuckDBPyConnection, paths: list) -> int:
        return scalar(con, sql, {**params, "path": list(paths)})

    return load


def table_load(table: str, columns: Sequence[str] = (), select: str = "*") -> Load:
    """Loads Arrow-table (or DataFrame) chunks into `table`, each with `insert_frame`."""

    def load(con: duckdb.DuckDBPyConnection, frames: list) -> int:
        return sum(insert_frame(con, table, f, columns, select=select) for f in frames)

    return load


def remove_files(paths: Iterable[str]) -> None:
    """Discards file chunks: each file is deleted once loaded or dropped."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


class ChunkLoader:
    """A bounded queue of chunks loaded into DuckDB by one worker thread per connection in
    `cons` (see the module docstring for how a pass ends). `load(con, chunks)` loads chunks;
    `discard(chunks)`, if given, is called for every chunk once it is loaded, failed or
    dropped unloaded (spool files are deleted). The connections are the workers' until
    `close()` returns. As a context manager, it closes with `load=False` when its block
    raised."""

    def __init__(self, cons: Sequence[duckdb.DuckDBPyConnection], load: Load, *,
                 max_waiting: int, batch: bool = False, commit: bool = True,
                 discard: Callable[[list], None] | None = None, name: str = "store-load"):
        if not cons or max_waiting < 1:
            raise ValueError("a loader needs a connection and room for a chunk")
        self.cons = list(cons)
        self.max_waiting, self.batch, self.commit = max_waiting, batch, commit
        self._load, self._discard = load, discard
        self._cond = threading.Condition()
        self._queue: deque = deque()
        self._closing = False  # no more chunks come: workers end when the queue is empty
        self._stopped = False  # no load may start any more
        self._failure: BaseException | None = None
        self._closed = False
        self.rows = 0  # rows the loads inserted
        if commit:
            self._begin()
        self._alive = len(self.cons)
        for i, con in enumerate(self.cons):
            threading.Thread(target=self._work, args=(con,), name=f"{name}-{i}",
                             daemon=True).start()

    def __enter__(self) -> ChunkLoader:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(load=exc_type is None)

    def put(self, chunk) -> None:
        """Queue one chunk, waiting while `max_waiting` are queued. Raises the failure of a
        load (the chunk is discarded), or RuntimeError once the loader is closed."""
        with self._cond:
            while len(self._queue) >= self.max_waiting and not self._stopped:
                self._cond.wait()
            if not (self._stopped or self._closing):
                self._queue.append(chunk)
                self._cond.notify_all()
                return
            failure = self._failure
        self._dispose([chunk])
        if failure is not None:
            raise failure
        raise RuntimeError("chunk loader already closed")

    def close(self, load: bool = True) -> int:
        """Load what is queued, wait for every load and commit; returns the rows inserted.
        With `load=False`, when a load failed, or when anything (Ctrl-C) interrupts the wait,
        the loads are stopped instead and every transaction rolled back."""
        if self._closed:
            return self.rows
        self._closed = True
        done = False
        try:
            if load:
                self._finish()
                done = True
            return self.rows
        except BaseException:
            self._stop()
            raise
        finally:
            if not load:
                self._stop()
            if not done:
                self._rollback()
            with self._cond:
                left = list(self._queue)
                self._queue.clear()
            self._dispose(left)

    # --- inside --------------------------------------------------------------------------------
    def _begin(self) -> None:
        for i, con in enumerate(self.cons):
            try:
                con.execute("BEGIN TRANSACTION")
            except BaseException:
                for begun in self.cons[:i]:
                    with contextlib.suppress(duckdb.Error):
                        begun.execute("ROLLBACK")
                raise

    def _finish(self) -> None:
        """Let the workers load what is queued and end, then commit (see close)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while self._alive and self._failure is None:
                self._cond.wait()
            failure = self._failure
        if failure is not None:
            raise failure
        if self.commit:
            for con in self.cons:
                con.execute("COMMIT")

    def _rollback(self) -> None:
        if self.commit:
            for con in self.cons:  # a committed one has no transaction left: that error is moot
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")

    def _work(self, con: duckdb.DuckDBPyConnection) -> None:
        try:
            while True:
                chunks = self._take()
                if not chunks:
                    return
                try:
                    n = self._load(con, chunks)
                except BaseException as exc:
                    self._fail(exc, con)
                    return
                finally:
                    self._dispose(chunks)
                with self._cond:
                    self.rows += n
        finally:
            with self._cond:
                self._alive -= 1
                self._cond.notify_all()

    def _take(self) -> list:
        """The next chunks to load (all queued ones with `batch`), or [] when the worker
        ends."""
        with self._cond:
            while not (self._queue or self._closing or self._stopped):
                self._cond.wait()
            if self._stopped or not self._queue:
                return []
            if self.batch:
                chunks = list(self._queue)
                self._queue.clear()
            else:
                chunks = [self._queue.popleft()]
            self._cond.notify_all()  # room for put()
            return chunks

    def _fail(self, exc: BaseException, con: duckdb.DuckDBPyConnection) -> None:
        """A load failed: the first failure (not an interruption by a stop) is the pass's; no
        load starts any more and the running ones are interrupted."""
        with self._cond:
            first = not self._stopped
            if first:
                self._failure = exc
            self._stopped = True
            self._cond.notify_all()
        if first:
            for other in self.cons:
                if other is not con:
                    other.interrupt()

    def _stop(self) -> None:
        """Start no more loads and interrupt the running ones; return once none runs."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        while True:
            try:
                for con in self.cons:
                    con.interrupt()  # a connection that is not running yet ignores it: again
                with self._cond:
                    if not self._alive:
                        return
                    self._cond.wait(0.1)
            except KeyboardInterrupt:
                continue

    def _dispose(self, chunks: list) -> None:
        if self._discard is not None and chunks:
            self._discard(chunks)
