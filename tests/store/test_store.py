"""The audit store's schema: a store made by an earlier version is brought up to date with its
rows intact, whatever DuckDB storage format its file has."""

from __future__ import annotations

from datetime import datetime

import duckdb
import pytest

from civimc_audit.store import database as store_module
from civimc_audit.store.database import MIGRATIONS, Store, zstd_available


def _old_store(path, storage_version: str | None = None) -> None:
    """A store as schema version 2 left it, holding one snapshot of each side."""
    config = {"storage_compatibility_version": storage_version} if storage_version else {}
    with duckdb.connect(str(path), config=config) as con:
        con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for version, sql in enumerate(MIGRATIONS[:2], start=1):
            con.execute(sql)
            con.execute("INSERT INTO schema_version VALUES (?)", [version])
        con.execute("INSERT INTO mailchimp_member VALUES"
                    " (2, 'a1', 'ann@example.org', 'subscribed', '2026-01-02 03:04:05', 'Ann',"
                    "  'Lee', '{\"FNAME\":\"Ann\",\"LNAME\":\"Lee\",\"PHONE\":\"1\"}', 'u1', 'c1',"
                    "  NULL),"
                    " (2, 'b2', 'bo@example.org', 'cleaned', NULL, 'Bo', NULL, NULL, NULL, NULL,"
                    "  '2025-01-01 00:00:00')")
        con.execute("INSERT INTO civicrm_contact VALUES (1, 7, 'Individual', 'Ann', 'Lee',"
                    " 'Ann Lee', false, false, false, false)")
        con.execute("INSERT INTO civicrm_email VALUES (1, 70, 7, 'ann@example.org', true,"
                    " false, 0, 1)")
        con.execute("INSERT INTO outcomes VALUES (1, 1, 'ann@example.org', 7, 'a1', 'Ann Lee',"
                    " 'subscribed', '2026-01-02 03:04:05', 'Added', NULL, 'Added', 'mailchimp',"
                    " 'no_change', 'R1', '', 'Subscribed on both sides.', '', NULL)")


@pytest.mark.parametrize("storage_version", [None, "v0.10.2"])
def test_an_older_store_keeps_its_rows_and_names_come_from_merge_fields(tmp_path,
                                                                       storage_version):
    path = tmp_path / "audit.duckdb"
    _old_store(path, storage_version)
    with Store(path) as store:
        assert store.con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == len(
            MIGRATIONS)
        rows = store.con.execute(
            "SELECT id, email_address, status, last_changed, NULLIF(merge_fields->>'$.FNAME', ''),"
            " NULLIF(merge_fields->>'$.LNAME', ''),"
            " merge_fields->>'$.PHONE', contact_id FROM mailchimp_member ORDER BY id").fetchall()
        assert [r[:3] + r[4:] for r in rows] == [
            ("a1", "ann@example.org", "subscribed", "Ann", "Lee", "1", "c1"),
            ("b2", "bo@example.org", "cleaned", "Bo", None, None, None)]
        assert str(rows[0][3]) == "2026-01-02 03:04:05" and rows[1][3] is None
        # Mailchimp's unique_email_id and timestamp_opt are no longer kept, and names are
        # only in merge_fields (no columns, not even virtual ones).
        columns = {r[0] for r in store.con.execute("DESCRIBE mailchimp_member").fetchall()}
        assert not columns & {"unique_email_id", "timestamp_opt", "fname", "lname"}
        assert store.con.execute("SELECT display_name FROM civicrm_contact").fetchone() == (
            "Ann Lee",)
        assert store.con.execute("SELECT email FROM civicrm_email").fetchone() == (
            "ann@example.org",)
        ddl = store.con.execute("SELECT sql FROM duckdb_tables()"
                                " WHERE table_name = 'mailchimp_member'").fetchone()[0]
        # A file in the pre-1.2 format (as DuckDB 1.x makes by default) cannot hold zstd; it
        # keeps DuckDB's default compression.
        assert ("ZSTD" in ddl.upper()) == zstd_available(store.con)
        # Outcome rows too, with their sentences compressed alike.
        assert store.con.execute("SELECT * FROM outcomes").fetchall() == [(
            1, 1, "ann@example.org", 7, "a1", "Ann Lee", "subscribed",
            datetime(2026, 1, 2, 3, 4, 5), "Added", None, "Added", "mailchimp", "no_change",
            "R1", "", "Subscribed on both sides.", "", None, None)]  # + mailchimp_status_changed
        ddl = store.con.execute("SELECT sql FROM duckdb_tables()"
                                " WHERE table_name = 'outcomes'").fetchone()[0]
        assert ("ZSTD" in ddl.upper()) == zstd_available(store.con)
        if storage_version == "v0.10.2":
            assert not zstd_available(store.con)


def test_a_new_store_is_made_in_a_format_with_zstd(tmp_path, monkeypatch):
    """DuckDB 1.x would make new files readable by 0.10, which has no zstd."""
    monkeypatch.setattr(store_module, "_NEW_FILE_CONFIG",
                        {"storage_compatibility_version": "v1.2.0"})
    with Store(tmp_path / "audit.duckdb") as store:
        assert zstd_available(store.con)
        store.con.execute("INSERT INTO mailchimp_member (snapshot_id, id, email_address,"
                          " merge_fields) SELECT 1, md5(i::VARCHAR), i || '@example.org',"
                          " '{\"FNAME\":\"F\"}' FROM range(200000) t(i)")
        store.con.execute("CHECKPOINT")
        used = {r[0] for r in store.con.execute(
            "SELECT DISTINCT compression FROM pragma_storage_info('mailchimp_member')"
            " WHERE column_name = 'email_address'").fetchall()}
    assert "ZSTD" in {u.upper() for u in used}
    # Reopened, the store asks for no storage format: a plain connection in the same process
    # (a notebook's, say) can open the file alongside it.
    with Store(tmp_path / "audit.duckdb") as store, duckdb.connect(
            str(tmp_path / "audit.duckdb")) as plain:
        assert plain.execute("SELECT count(*) FROM mailchimp_member").fetchone()[0] == 200000
        assert zstd_available(store.con)


def test_open_store_waits_out_another_process_holding_the_file_lock(tmp_path, monkeypatch):
    """Only DuckDB's lock conflict is waited for, and only for `wait` seconds."""
    from civimc_audit.errors import StoreError
    from civimc_audit.store import open_store

    failures = ["Could not set lock on file", "Could not set lock on file"]
    real = store_module.Store

    def flaky(path):
        if failures:
            raise StoreError(failures.pop())
        return real(path)

    monkeypatch.setattr(store_module, "Store", flaky)
    with open_store(tmp_path / "a.duckdb", wait=5) as store:
        assert store.con.execute("SELECT 1").fetchone() == (1,)
    assert failures == []

    def locked(path):
        raise StoreError("Could not set lock on file")

    monkeypatch.setattr(store_module, "Store", locked)
    with pytest.raises(StoreError, match="lock"), open_store(tmp_path / "a.duckdb", wait=0.1):
        pass

    calls = []

    def broken(path):
        calls.append(path)
        raise StoreError("not a DuckDB file")

    monkeypatch.setattr(store_module, "Store", broken)
    with pytest.raises(StoreError, match="not a DuckDB"), open_store(tmp_path / "a.duckdb"):
        pass
    assert len(calls) == 1
