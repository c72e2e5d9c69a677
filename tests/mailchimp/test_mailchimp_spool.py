"""The spool that carries a full pass's raw pages into DuckDB (mailchimp.reader.Spool): its
files and their overlaps. How a pass ends (a failed load, an interrupted one, Ctrl-C, a failed
commit) is the shared loader's, tested in tests/store/test_loading.py."""

from __future__ import annotations

import os
import time

import orjson

from civimc_audit.mailchimp.reader import _PASS_SQL, _TABLES, STRIDE, Spool, split_page
from civimc_audit.store import Store


def _page(first: int, n: int, total: int) -> bytes:
    return orjson.dumps({"total_items": total, "members": [
        {"id": f"id{i}", "email_address": f"m{i}@example.org", "status": "subscribed",
         "last_changed": "2025-06-01T12:00:00+00:00", "merge_fields": {"FNAME": f"F{i}"},
         "unique_email_id": f"u{i}", "contact_id": f"c{i}", "timestamp_opt": ""}
        for i in range(first, first + n)]})


def _wait_for_rows(spool: Spool) -> None:
    deadline = time.monotonic() + 30
    while not spool.rows and time.monotonic() < deadline:
        time.sleep(0.01)
    assert spool.rows


def _spool(store: Store, folder) -> Spool:
    for sql in _TABLES:
        store.con.execute(sql)
    return Spool(str(folder), 1, [store.con.cursor(), store.con.cursor()], _PASS_SQL,
                 {"snap": 1}, file_bytes=300_000)  # 2 pages a file


def test_backlog_loads_every_page_once_without_overlaps(tmp_path):
    """Pages written faster than they load (a backlog of many files) all land, each member
    once, the one-member page overlaps left out, and no spool file is left behind."""
    total = 8 * STRIDE + 1
    with Store(tmp_path / "audit.duckdb") as store:
        spool = _spool(store, tmp_path)
        for k in range(8):
            spool.write(split_page(_page(k * STRIDE, STRIDE + 1, total), k * STRIDE).members)
        spool.close()
        n, distinct, fname = store.con.execute(
            "SELECT count(*), count(DISTINCT id), max_by(merge_fields->>'$.FNAME', id)"
            " FROM mailchimp_member WHERE snapshot_id = 1").fetchone()
        assert (n, distinct) == (total, total) and spool.rows == total
        assert fname == "F999"  # max id by string order is id999
    assert [p for p in os.listdir(tmp_path) if p.endswith(".json")] == []


def test_abandoned_pass_leaves_no_rows_and_no_files(tmp_path):
    """A pass that fails part-way (close(load=False)) loads nothing more, leaves no file
    behind and rolls back what its loads had inserted."""
    with Store(tmp_path / "audit.duckdb") as store:
        spool = _spool(store, tmp_path)
        for k in range(5):
            spool.write(split_page(_page(k * STRIDE, STRIDE + 1, 10_000), k * STRIDE).members)
            if k == 1:
                _wait_for_rows(spool)  # the first file is in, uncommitted
        spool.close(load=False)
        assert spool.rows < 5 * STRIDE + 1  # the unfinished file never loads
        assert store.con.execute("SELECT count(*) FROM mailchimp_member").fetchone()[0] == 0
    assert [p for p in os.listdir(tmp_path) if p.endswith(".json")] == []
