"""The spool that carries a full pass's raw pages into DuckDB (mailchimp.reader.Spool)."""

from __future__ import annotations

import os

import orjson

from civimc_audit.mailchimp.reader import _PASS_SQL, _TABLES, STRIDE, Spool, split_page
from civimc_audit.store import Store


def _page(first: int, n: int, total: int) -> bytes:
    return orjson.dumps({"total_items": total, "members": [
        {"id": f"id{i}", "email_address": f"m{i}@example.org", "status": "subscribed",
         "last_changed": "2025-06-01T12:00:00+00:00", "merge_fields": {"FNAME": f"F{i}"},
         "unique_email_id": f"u{i}", "contact_id": f"c{i}", "timestamp_opt": ""}
        for i in range(first, first + n)]})


def _spool(store: Store, folder) -> Spool:
    for sql in _TABLES:
        store.con.execute(sql)
    return Spool(str(folder), 1, store.con, _PASS_SQL, {}, file_bytes=300_000)  # 2 pages a file


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
            " FROM _mc_pass").fetchone()
        assert (n, distinct) == (total, total) and spool.rows == total
        assert fname == "F999"  # max id by string order is id999
    assert [p for p in os.listdir(tmp_path) if p.endswith(".json")] == []


def test_abandoned_pass_leaves_no_rows_and_no_files(tmp_path):
    """A pass that fails part-way (close(load=False)) loads nothing more, leaves no file
    behind and writes nothing to the store's own tables (staged rows are temporary)."""
    with Store(tmp_path / "audit.duckdb") as store:
        spool = _spool(store, tmp_path)
        for k in range(5):
            spool.write(split_page(_page(k * STRIDE, STRIDE + 1, 10_000), k * STRIDE).members)
        spool.close(load=False)
        staged = store.con.execute("SELECT count(*) FROM _mc_pass").fetchone()[0]
        assert staged == spool.rows < 5 * STRIDE + 1  # the last, unfinished file never loads
        assert store.con.execute("SELECT count(*) FROM mailchimp_member").fetchone()[0] == 0
    assert [p for p in os.listdir(tmp_path) if p.endswith(".json")] == []
