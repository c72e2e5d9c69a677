"""The shared chunk loader (store.loading.ChunkLoader): chunks of both kinds (files read by SQL,
Arrow tables) reach DuckDB on worker connections, and a pass ends one way: committed whole, or
rolled back whole when a chunk fails, the producer gives up, Ctrl-C comes or a commit fails."""

from __future__ import annotations

import os
import signal
import threading
import time

import duckdb
import pyarrow as pa
import pytest

from civimc_audit.store.loading import ChunkLoader, file_load, remove_files, table_load

# Hours of counting: a load that only an interruption ends.
_HOURS = "(SELECT count(*) FROM range(1000000000000))"
_FOREVER = f" WHERE {_HOURS} > 0"
_FILE_SQL = "INSERT INTO t SELECT id, name FROM read_csv($path, header = true, columns = " \
            "{'id': 'INTEGER', 'name': 'VARCHAR'})"


@pytest.fixture
def con(tmp_path):
    con = duckdb.connect(str(tmp_path / "store.duckdb"))
    con.execute("CREATE TABLE t (id INTEGER NOT NULL, name VARCHAR)")
    yield con
    con.close()


def _rows(con) -> int:
    return con.execute("SELECT count(*) FROM t").fetchone()[0]


def _spool_files(tmp_path) -> list[str]:
    return sorted(p for p in os.listdir(tmp_path) if p.endswith(".csv"))


class Files:
    """File chunks: CSV files of `n` rows loaded by SQL over `$path`, deleted once done."""

    def __init__(self, folder):
        self.folder, self.made = folder, 0

    def chunk(self, first: int, n: int, broken: bool = False) -> str:
        self.made += 1
        path = os.path.join(self.folder, f"{self.made}.csv")
        with open(path, "w") as f:
            f.write("id,name\n")
            for i in range(first, first + n):
                f.write(f"{'x' if broken else i},n{i}\n")
        return path

    def loader(self, cons, sql: str = _FILE_SQL, **kw) -> ChunkLoader:
        return ChunkLoader(cons, file_load(sql), discard=remove_files, **kw)


class Tables:
    """Arrow-table chunks inserted with insert_frame."""

    def __init__(self, folder):
        self.folder = folder

    def chunk(self, first: int, n: int, broken: bool = False) -> pa.Table:
        ids = [None if broken else i for i in range(first, first + n)]  # NOT NULL id
        return pa.table({"id": pa.array(ids, pa.int32()),
                         "name": [f"n{i}" for i in range(first, first + n)]})

    def loader(self, cons, sql: str | None = None, **kw) -> ChunkLoader:
        # A slow load (any `sql`) waits on a count that takes hours.
        select = "*" if sql is None else f"id + 0 * {_HOURS}, name"
        return ChunkLoader(cons, table_load("t", select=select), **kw)


KINDS = [pytest.param(Files, id="files"), pytest.param(Tables, id="arrow tables")]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch", [False, True])
def test_every_chunk_lands_once_and_commits_at_close(con, tmp_path, kind, batch):
    """Chunks queued faster than they load all land, once each, committed by close() (visible
    to another connection only then), and every file is gone."""
    chunks = kind(tmp_path)
    cons = [con.cursor(), con.cursor()]
    loader = chunks.loader(cons, max_waiting=3, batch=batch)
    for k in range(10):
        loader.put(chunks.chunk(k * 100, 100))
    assert _rows(con) == 0  # loaded or not, nothing is committed yet
    assert loader.close() == 1000
    assert con.execute("SELECT count(*), count(DISTINCT id) FROM t").fetchone() == (1000, 1000)
    assert _spool_files(tmp_path) == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_chunk_fails_the_pass_and_commits_nothing(con, tmp_path, kind):
    """One chunk failing makes put() or close() raise it; the chunks other connections loaded
    fine are rolled back with it, and no file is left."""
    chunks = kind(tmp_path)
    cons = [con.cursor(), con.cursor()]
    loader = chunks.loader(cons, max_waiting=2)
    loader.put(chunks.chunk(0, 100))
    deadline = time.monotonic() + 30
    while not loader.rows and time.monotonic() < deadline:  # the first chunk is in, uncommitted
        time.sleep(0.01)
    assert loader.rows == 100
    with pytest.raises(duckdb.Error):
        loader.put(chunks.chunk(100, 100, broken=True))
        for k in range(2, 50):  # the failure comes back from a later put(), or from close()
            loader.put(chunks.chunk(k * 100, 100))
        loader.close()
    loader.close(load=False)
    assert _rows(con) == 0
    assert _spool_files(tmp_path) == []


def _slow_loader(con, tmp_path, kind, n_cons: int = 2):
    chunks = kind(tmp_path)
    cons = [con.cursor() for _ in range(n_cons)]
    slow = _FILE_SQL + _FOREVER if kind is Files else "slow"
    loader = chunks.loader(cons, slow, max_waiting=4)
    for k in range(4):  # two loads count, two wait for a connection
        loader.put(chunks.chunk(k * 100, 100))
    time.sleep(0.3)
    return loader, cons


def _closed_within(loader, cons, seconds: float, **kw) -> None:
    closing = threading.Thread(target=loader.close, kwargs=kw, daemon=True)
    closing.start()
    closing.join(seconds)
    if closing.is_alive():  # fail, without leaving hours of counting behind
        for c in cons:
            c.interrupt()
        closing.join(60)
        pytest.fail("close() waited for the loads to finish")


@pytest.mark.parametrize("kind", KINDS)
def test_abandoning_a_pass_interrupts_running_loads_and_starts_no_queued_one(con, tmp_path,
                                                                            kind):
    """close(load=False) (the producer failed) stops the running loads rather than waiting for
    them, starts none of those queued, rolls back and deletes every file."""
    loader, cons = _slow_loader(con, tmp_path, kind)
    _closed_within(loader, cons, 60, load=False)
    assert _rows(con) == 0 and loader.rows == 0
    assert _spool_files(tmp_path) == []
    with pytest.raises(RuntimeError):
        loader.put(kind(tmp_path).chunk(0, 1))


@pytest.mark.parametrize("kind", KINDS)
def test_ctrl_c_while_closing_interrupts_the_loads_and_rolls_back(con, tmp_path, kind):
    """Ctrl-C while close() waits for running loads: the loads are interrupted, nothing is
    committed, no worker is left running, and the connections work on."""
    loader, cons = _slow_loader(con, tmp_path, kind)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            loader.close()
    finally:
        timer.cancel()
    assert _rows(con) == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("store-load")]
    assert _spool_files(tmp_path) == []
    assert [c.execute("SELECT 1").fetchone() for c in cons] == [(1,), (1,)]


def test_a_failed_commit_rolls_back_the_connections_after_it(con, tmp_path):
    """The connections commit in turn: when the second fails (here a key the first committed),
    the third is rolled back; the first has stored its rows (the caller drops them)."""
    con.execute("CREATE TABLE k (id INTEGER PRIMARY KEY)")
    cons = [con.cursor() for _ in range(3)]
    keys = {id(cons[0]): 1, id(cons[1]): 1, id(cons[2]): 3}
    each_has_one = threading.Barrier(3, timeout=30)

    def load(c, chunks):
        each_has_one.wait()  # every connection takes one chunk
        c.execute("INSERT INTO k VALUES (?)", [keys[id(c)]])
        return 1

    loader = ChunkLoader(cons, load, max_waiting=3)
    for _ in range(3):
        loader.put(object())
    with pytest.raises(duckdb.TransactionException):
        loader.close()
    assert con.execute("SELECT id FROM k").fetchall() == [(1,)]


def _blocked(con, first):
    """A loader with one worker held in the load of `first` and one chunk queued, and a
    third put() waiting in a thread for room; `go` lets the load go on."""
    go, started = threading.Event(), threading.Event()

    def load(c, chunks):
        started.set()
        go.wait(30)
        if chunks == ["bad"]:
            raise ValueError("bad chunk")
        return 1

    loader = ChunkLoader([con.cursor()], load, max_waiting=1)
    loader.put(first)
    assert started.wait(30)  # the worker took it
    loader.put("queued")
    outcome = []
    third = threading.Thread(target=lambda: outcome.append(_put(loader, "third")), daemon=True)
    third.start()
    third.join(0.3)
    assert third.is_alive()  # the queue is full
    go.set()
    third.join(30)
    assert not third.is_alive()
    return loader, outcome


def _put(loader, chunk):
    try:
        loader.put(chunk)
    except Exception as exc:  # noqa: BLE001 - returned to the test
        return exc
    return "queued"


def test_put_waits_while_the_queue_is_full_until_a_worker_takes_a_chunk(con):
    """At most `max_waiting` chunks wait: put() returns once a worker takes one."""
    loader, outcome = _blocked(con, "good")
    assert outcome == ["queued"]
    assert loader.close() == 3


def test_a_waiting_put_raises_the_failure_of_a_load(con):
    """When the running load fails, a put() waiting for room raises that failure rather than
    waiting on, and close() raises it too."""
    loader, outcome = _blocked(con, "bad")
    assert isinstance(outcome[0], ValueError)
    with pytest.raises(ValueError, match="bad chunk"):
        loader.close()


def test_in_the_callers_transaction_the_loader_begins_and_commits_nothing(con, tmp_path):
    """With commit=False the rows join the caller's transaction: its rollback undoes them."""
    chunks = Tables(tmp_path)
    con.execute("BEGIN TRANSACTION")
    with ChunkLoader([con], table_load("t"), max_waiting=1, commit=False) as loader:
        for k in range(3):
            loader.put(chunks.chunk(k * 10, 10))
    assert _rows(con) == 30
    con.execute("ROLLBACK")
    assert _rows(con) == 0
