"""The CiviCRM snapshot against the real MariaDB: every schema variant read exactly, through a
SELECT-only account, in one consistent read; DATETIME history dates in the site's time zone;
connection faults fail cleanly and a rerun succeeds."""

from __future__ import annotations

import json
from datetime import datetime

import pytest
from support.civicrm import db_user, settings_for, variant_db

from civimc_audit.civicrm.dump import find_client
from civimc_audit.civicrm.reader import snapshot_civicrm
from civimc_audit.errors import CiviCRMError, ConfigError
from civimc_audit.store import Store
from civimc_sandbox.civicrm.fixture import VARIANTS

SITE_ZONE = "America/New_York"
TRANSPORTS = [pytest.param("client", marks=pytest.mark.skipif(
    find_client() is None, reason="no mariadb/mysql command-line client")), "server"]


@pytest.fixture(params=TRANSPORTS)
def transport(request):
    """Each test runs through the command-line client and through server-packed chunks."""
    return request.param


def _rows(store: Store, table: str, snap_id: int, cols: str) -> list[tuple]:
    return store.con.execute(f"SELECT {cols} FROM {table} WHERE snapshot_id = ? ORDER BY id",
                             [snap_id]).fetchall()


def _populate(db, *, wide: bool):
    """People covering names with odd characters, every email flag and each history status."""
    f, g = db.fixture, db.group_id
    odd = "Zoë\tÅngström\\N \"O'Brien\"\nNULL" + (" 🎉" if wide else "")
    people = {
        "ann": f.contact("Ann", odd, email="ann@example.org"),
        "bob": f.contact("", None, email=" Bob@Example.org ", do_not_email=True, is_opt_out=True),
        "cat": f.contact("Cat", "Deleted", is_deleted=True, is_deceased=True,
                         email="cat@example.org"),
        "dan": f.contact("Dan", "Nomail"),  # no email, but history with the group
        "eve": f.contact("Eve", "Elsewhere", email="eve@example.org"),  # not in the group
        "org": f.contact(None, None, contact_type="Organization", email="org@example.org"),
        "lonely": f.contact("No", "Email"),  # no email, no group: not needed by the rules
    }
    f.email(people["ann"], "ann.work@example.org", is_bulkmail=True, location_type_id=2)
    f.email(people["bob"], "held@example.org", on_hold=2)
    f.add_to_group(people["ann"], g, "2024-01-15T09:30:00Z")
    f.add_to_group(people["bob"], g, "2024-07-01T23:59:59Z")  # across midnight in New York
    f.remove_from_group(people["bob"], g, "2024-11-03T07:30:00Z")  # just after the DST fall-back
    f.pending(people["cat"], g, "2024-03-10T07:00:00Z")
    f.delete_from_group(people["dan"], g, "2023-12-31T23:00:00Z")
    other = f.group("other", "Other group")
    f.add_to_group(people["eve"], other, "2024-02-02T00:00:00Z")
    f.commit()
    return people, odd


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_schema_variant_snapshots_exactly_with_a_select_only_account(
        variant, transport, mysql_server, tmp_path, monkeypatch):
    v = VARIANTS[variant]
    zone = SITE_ZONE if v.history_datetime else None
    with variant_db(mysql_server, variant, timezone=zone) as db:
        people, odd = _populate(db, wide=v.charset == "utf8mb4")
        if v.nullable_group_names:
            with db.server.connect(db.name) as admin, admin.cursor() as cur:
                cur.execute("UPDATE civicrm_group SET name = NULL WHERE id = %s", (db.group_id,))
                admin.commit()
        with db_user(db, "SELECT") as (user, pw), Store(tmp_path / "a.duckdb") as store:
            settings = settings_for(db, monkeypatch, user=user, password=pw, timezone=zone)
            snap = snapshot_civicrm(settings, store, transport=transport)
            assert snap.status == "complete"
            assert snap.meta["transport"] == {"client": "mysql client"}.get(transport, "server-packed")
            assert snap.meta["history_date_type"] == ("DATETIME" if zone else "TIMESTAMP")
            sid = snap.id
            group = _rows(store, "civicrm_group", sid, "id, name, title, group_type,"
                          " saved_search_id, is_active, is_hidden")
            assert group == [(db.group_id, None if v.nullable_group_names else "newsletter",
                              "Newsletter", "\x012\x01", None, True, False)]
            contacts = _rows(store, "civicrm_contact", sid,
                             "id, contact_type, first_name, last_name, display_name, is_deleted,"
                             " do_not_email, is_opt_out, is_deceased")
            by_id = {c[0]: c for c in contacts}
            assert set(by_id) == set(people.values()) - {people["lonely"]}
            assert by_id[people["ann"]][1:] == ("Individual", "Ann", odd, f"Ann {odd}", False,
                                                False, False, False)
            assert by_id[people["bob"]][2:4] == ("", None)
            assert by_id[people["bob"]][5:] == (False, True, True, False)
            assert by_id[people["cat"]][5:] == (True, False, False, True)
            assert by_id[people["org"]][1] == "Organization"
            emails = _rows(store, "civicrm_email", sid, "contact_id, email, is_primary,"
                           " is_bulkmail, on_hold, location_type_id")
            assert (people["bob"], " Bob@Example.org ", True, False, 0, 1) in emails
            assert (people["ann"], "ann.work@example.org", False, True, 0, 2) in emails
            assert (people["bob"], "held@example.org", False, False, 2, 1) in emails
            assert len(emails) == 7
            memberships = _rows(store, "civicrm_group_contact", sid, "contact_id, status")
            assert sorted(memberships) == sorted([(people["ann"], "Added"),
                                                  (people["bob"], "Removed"),
                                                  (people["cat"], "Pending")])
            history = _rows(store, "civicrm_subscription_history", sid,
                            "contact_id, date, method, status")
            assert history == [
                (people["ann"], datetime(2024, 1, 15, 9, 30), "Admin", "Added"),
                (people["bob"], datetime(2024, 7, 1, 23, 59, 59), "Admin", "Added"),
                (people["bob"], datetime(2024, 11, 3, 7, 30), "Admin", "Removed"),
                (people["cat"], datetime(2024, 3, 10, 7, 0), "Email", "Pending"),
                (people["dan"], datetime(2023, 12, 31, 23, 0), "Admin", "Deleted"),
            ]


def test_datetime_history_without_a_timezone_is_a_config_error(mysql_server, tmp_path,
                                                                 monkeypatch):
    with variant_db(mysql_server, "4.x", timezone=SITE_ZONE) as db, \
            Store(tmp_path / "a.duckdb") as store:
        with pytest.raises(ConfigError) as err:
            snapshot_civicrm(settings_for(db, monkeypatch), store)
        assert "timezone" in str(err.value) and "\n" not in str(err.value)
        assert store.snapshots() == []
        with pytest.raises(ConfigError, match="not a known time zone"):
            # The config refuses it at load; the snapshot checks again (settings made in code).
            unchecked = settings_for(db, monkeypatch).model_copy(update={"timezone": "Mars/Olympus"})
            snapshot_civicrm(unchecked, store)


def test_snapshot_is_one_consistent_read(civi_db, transport, tmp_path, monkeypatch):
    f, g = civi_db.fixture, civi_db.group_id
    first = f.contact("First", "Member", email="first@example.org")
    f.add_to_group(first, g, "2024-01-01T00:00:00Z")
    f.commit()
    writer = civi_db.server.connect(civi_db.name, autocommit=True)
    with writer.cursor() as cur:
        # The snapshot will wait at the history table until the writer is done.
        cur.execute("SET SESSION foreign_key_checks = 0")
        cur.execute("LOCK TABLES civicrm_subscription_history WRITE, civicrm_contact WRITE,"
                    " civicrm_email WRITE")
    written = []

    def write_meanwhile(table, rows):
        # Once the snapshot has read the memberships, someone joins the group and an email
        # goes on hold; then the tables are released for the snapshot's later reads.
        if table == "civicrm_group_contact" and not written:
            with writer.cursor() as cur:
                cur.execute("INSERT INTO civicrm_contact (contact_type, first_name) VALUES"
                            " ('Individual', 'Late')")
                late = cur.lastrowid
                cur.execute("INSERT INTO civicrm_email (contact_id, email, is_primary) VALUES"
                            " (%s, 'late@example.org', 1)", (late,))
                cur.execute("INSERT INTO civicrm_subscription_history (contact_id, group_id,"
                            " method, status) VALUES (%s, %s, 'API', 'Added')", (late, g))
                cur.execute("UPDATE civicrm_email SET on_hold = 1 WHERE contact_id = %s",
                            (first,))
                cur.execute("UNLOCK TABLES")
            written.append(late)

    try:
        with Store(tmp_path / "a.duckdb") as store:
            snap = snapshot_civicrm(settings_for(civi_db, monkeypatch), store,
                                    on_chunk=write_meanwhile, transport=transport)
            assert written
            assert snap.row_counts == {"civicrm_group": 1, "civicrm_contact": 1,
                                       "civicrm_email": 1, "civicrm_group_contact": 1,
                                       "civicrm_subscription_history": 1}
            assert _rows(store, "civicrm_email", snap.id, "on_hold") == [(0,)]
    finally:
        writer.close()


def _reader_connection_ids(db, user):
    with db.server.connect() as admin, admin.cursor() as cur:
        cur.execute("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = %s", (user,))
        return [r[0] for r in cur.fetchall()]


def test_connection_lost_mid_read_stores_nothing_and_a_rerun_succeeds(civi_db, transport,
                                                                      tmp_path, monkeypatch):
    f, g = civi_db.fixture, civi_db.group_id
    for i in range(3):
        f.add_to_group(f.contact(f"P{i}", "X", email=f"p{i}@example.org"), g, "2024-01-01T00:00Z")
    f.commit()
    locker = civi_db.server.connect(civi_db.name)
    with db_user(civi_db, "SELECT") as (user, pw), Store(tmp_path / "a.duckdb") as store:
        settings = settings_for(civi_db, monkeypatch, user=user, password=pw)
        with locker.cursor() as cur:  # holds the read at the contacts until the kill
            cur.execute("LOCK TABLES civicrm_email WRITE")

        def kill_reader(table, rows):
            if table == "civicrm_subscription_history":
                with civi_db.server.connect() as admin, admin.cursor() as cur:
                    for cid in _reader_connection_ids(civi_db, user):
                        cur.execute(f"KILL CONNECTION {int(cid)}")

        try:
            with pytest.raises(CiviCRMError) as err:
                snapshot_civicrm(settings, store, on_chunk=kill_reader, transport=transport)
        finally:
            with locker.cursor() as cur:
                cur.execute("UNLOCK TABLES")
            locker.close()
        message = str(err.value)
        assert "lost the connection" in message and "run the snapshot again" in message
        assert "\n" not in message and pw not in message
        (failed,) = store.snapshots()
        assert failed.status == "failed" and store.latest_snapshot("civicrm") is None
        for table in ("civicrm_group", "civicrm_contact", "civicrm_email",
                      "civicrm_group_contact", "civicrm_subscription_history"):
            assert store.con.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)

        again = snapshot_civicrm(settings, store, transport=transport)
        assert again.status == "complete" and again.row_counts["civicrm_group_contact"] == 3
        assert store.latest_snapshot("civicrm").id == again.id


def test_lock_wait_timeout_fails_cleanly_and_a_rerun_succeeds(civi_db, transport, tmp_path,
                                                              monkeypatch):
    f, g = civi_db.fixture, civi_db.group_id
    f.add_to_group(f.contact("A", "B", email="a@example.org"), g, "2024-01-01T00:00:00Z")
    f.commit()
    settings = settings_for(civi_db, monkeypatch)
    locker = civi_db.server.connect(civi_db.name)
    try:
        with locker.cursor() as cur:
            cur.execute("LOCK TABLES civicrm_email WRITE")  # as a schema change would
        with Store(tmp_path / "a.duckdb") as store:
            with pytest.raises(CiviCRMError) as err:
                snapshot_civicrm(settings, store, lock_wait_timeout=1, transport=transport)
            assert "lock wait timeout" in str(err.value)
            assert store.latest_snapshot("civicrm") is None
            with locker.cursor() as cur:
                cur.execute("UNLOCK TABLES")
            assert snapshot_civicrm(settings, store, transport=transport).status == "complete"
    finally:
        locker.close()


def test_smart_groups_are_refused(civi_db, tmp_path, monkeypatch):
    smart = civi_db.fixture.group("smart", "Smart", saved_search_id=None)
    civi_db.fixture.commit()
    with civi_db.server.connect(civi_db.name) as admin, admin.cursor() as cur:
        cur.execute("SET FOREIGN_KEY_CHECKS = 0")
        cur.execute("UPDATE civicrm_group SET saved_search_id = 7 WHERE id = %s", (smart,))
        admin.commit()
    with Store(tmp_path / "a.duckdb") as store, pytest.raises(ConfigError, match="smart group"):
        snapshot_civicrm(settings_for(civi_db, monkeypatch, group_id=smart), store)


def _config(path, db, emulator, extra=""):
    from support.values import TEST_LIST_ID

    path.write_text(f"""
[civicrm]
host = "{db.server.host}"
port = {db.server.port}
database = "{db.name}"
user = "{db.server.user}"
group_id = {db.group_id}
{extra}

[mailchimp]
list_id = "{TEST_LIST_ID}"
base_url = "{emulator.base_url}"

[store]
path = "audit.duckdb"
""", encoding="utf-8")
    return path


def test_old_site_end_to_end_through_the_cli(mysql_server, emulator, run_cli, tmp_path,
                                             monkeypatch):
    """A 4.x-style site (DATETIME history in local time, utf8, ENUM statuses): without a
    timezone the CLI stops with one line and exit 2; with it, the seed's outcomes come out
    exactly as on a current site."""
    from support.values import TEST_API_KEY, TEST_LIST_ID

    from civimc_audit.config import ENV_CIVICRM_PASSWORD, ENV_MAILCHIMP_API_KEY
    from civimc_sandbox.demo import load_seed, seed_email

    monkeypatch.setenv(ENV_CIVICRM_PASSWORD, mysql_server.password)
    monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, TEST_API_KEY)
    with variant_db(mysql_server, "4.x", timezone="Australia/Sydney") as db:
        load_seed(db.fixture, db.group_id, emulator, TEST_LIST_ID, 2026)
        db.fixture.commit()
        config = _config(tmp_path / "civimc-audit.toml", db, emulator)
        code, out, err = run_cli("--config", config, "snapshot", "--civicrm-only")
        assert code == 2 and "set [civicrm] timezone" in err and len(err.strip().splitlines()) == 1
        _config(config, db, emulator, 'timezone = "Australia/Sydney"')
        code, out, err = run_cli("--config", config, "snapshot")
        assert code == 0, err
        code, out, err = run_cli("--config", config, "reconcile")
        assert code == 0, err
        code, out, err = run_cli("--config", config, "outcomes", "--format", "json")
        rows = {r["email"]: r for r in json.loads(out)}
        assert {first: rows[seed_email(first)]["rule"] for first in
                ("Wilma", "Barney", "Fred", "Betty", "Pebbles")} == {
            "Wilma": "R5", "Barney": "R2", "Fred": "R9", "Betty": "R6", "Pebbles": "R3"}
        assert rows[seed_email("Barney")]["civicrm_changed"] == "2026-01-01T10:00:00Z"
