"""The CiviCRM writer against the real MariaDB: rows as CiviCRM stores them, idempotence, bounded
transactions, half-applied reruns, privileges and the drift check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pymysql
import pytest
from support.civicrm import db_user, query, settings_for

from civimc_audit.civicrm.live import LiveCiviCRM
from civimc_audit.civicrm.writer import CiviCRMWriter, display_names
from civimc_audit.errors import CiviCRMError, ConfigError


def _server_now(civi_db) -> datetime:
    return query(civi_db, "SELECT UTC_TIMESTAMP()")[0][0]


def _history(civi_db, group_id):
    return query(civi_db, "SELECT contact_id, `date`, method, status, tracking"
                          " FROM civicrm_subscription_history WHERE group_id = %s ORDER BY id",
                 (group_id,))


def _memberships(civi_db, group_id) -> dict[int, tuple[int, str]]:
    rows = query(civi_db, "SELECT contact_id, id, status FROM civicrm_group_contact"
                          " WHERE group_id = %s", (group_id,))
    return {c: (i, s) for c, i, s in rows}


def test_add_to_group_writes_row_and_history_like_core_and_is_idempotent(civi_db, monkeypatch):
    f, g = civi_db.fixture, civi_db.group_id
    new, was_removed, already = (f.contact("N", "Ew", email="new@example.org"),
                                 f.contact("R", "Em", email="rem@example.org"),
                                 f.contact("A", "Dd", email="add@example.org"))
    f.remove_from_group(was_removed, g, "2024-01-02T00:00:00Z")
    f.add_to_group(already, g, "2024-01-03T00:00:00Z")
    f.commit()
    removed_row_id = _memberships(civi_db, g)[was_removed][0]
    before = _server_now(civi_db)
    settings = settings_for(civi_db, monkeypatch)

    with CiviCRMWriter(settings) as w:
        result = w.add_to_group(g, [new, was_removed, already], "civimc-audit plan 7")
    after = _server_now(civi_db)

    assert result == {new: "done", was_removed: "done", already: "already"}
    members = _memberships(civi_db, g)
    assert {c: s for c, (_, s) in members.items()} == {new: "Added", was_removed: "Added",
                                                      already: "Added"}
    assert members[was_removed][0] == removed_row_id  # updated in place, not REPLACEd
    written = [h for h in _history(civi_db, g) if h[2] == "API"]
    assert sorted(h[0] for h in written) == sorted([new, was_removed])
    for _, date, method, status, tracking in written:
        assert (method, status, tracking) == ("API", "Added", "civimc-audit plan 7")
        assert before - timedelta(seconds=1) <= date <= after + timedelta(seconds=1)

    history_count = len(_history(civi_db, g))
    with CiviCRMWriter(settings) as w:
        again = w.add_to_group(g, [new, was_removed, already], "civimc-audit plan 7")
    assert again == {new: "already", was_removed: "already", already: "already"}
    assert len(_history(civi_db, g)) == history_count


def test_remove_from_group_keeps_a_removed_row_and_is_idempotent(civi_db, monkeypatch):
    f, g = civi_db.fixture, civi_db.group_id
    member, never, gone = (f.contact("M", "Em", email="m@example.org"),
                           f.contact("N", "Ever", email="n@example.org"),
                           f.contact("G", "One", email="g@example.org"))
    f.add_to_group(member, g, "2024-01-01T00:00:00Z")
    f.remove_from_group(gone, g, "2024-01-01T00:00:00Z")
    f.commit()
    settings = settings_for(civi_db, monkeypatch)
    with CiviCRMWriter(settings) as w:
        result = w.remove_from_group(g, [member, never, gone], "plan 3")
        assert w.remove_from_group(g, [member, never, gone], "plan 3") == {
            member: "already", never: "already", gone: "already"}
    assert result == {member: "done", never: "done", gone: "already"}
    assert {c: s for c, (_, s) in _memberships(civi_db, g).items()} == {
        member: "Removed", never: "Removed", gone: "Removed"}
    api_rows = [(h[0], h[3]) for h in _history(civi_db, g) if h[2] == "API"]
    assert sorted(api_rows) == sorted([(member, "Removed"), (never, "Removed")])


def test_missing_contact_is_reported_not_written(civi_db, monkeypatch):
    f, g = civi_db.fixture, civi_db.group_id
    real = f.contact("R", "Eal", email="r@example.org")
    f.commit()
    with CiviCRMWriter(settings_for(civi_db, monkeypatch)) as w:
        assert w.add_to_group(g, [real, 999999], "plan") == {real: "done", 999999: "missing"}
    assert set(_memberships(civi_db, g)) == {real}


def test_batches_commit_separately_and_a_half_applied_run_resumes(civi_db, monkeypatch):
    f, g = civi_db.fixture, civi_db.group_id
    ids = [f.contact(f"P{i}", "Erson", email=f"p{i}@example.org") for i in range(5)]
    f.remove_from_group(ids[3], g, "2024-01-01T00:00:00Z")
    f.commit()
    settings = settings_for(civi_db, monkeypatch)

    # Another session holds the membership row of ids[3] (batch 2 of size 2 is ids[2:4]):
    # batch 1 commits, batch 2 times out and is rolled back whole.
    blocker = civi_db.server.connect(civi_db.name, autocommit=False)
    try:
        with blocker.cursor() as cur:
            cur.execute("SELECT status FROM civicrm_group_contact WHERE id = %s FOR UPDATE",
                        (_memberships(civi_db, g)[ids[3]][0],))
        with CiviCRMWriter(settings, batch_size=2, lock_wait_timeout=1) as w, \
                pytest.raises(CiviCRMError) as err:
            w.add_to_group(g, ids, "plan 9")
    finally:
        blocker.rollback()
        blocker.close()
    message = str(err.value)
    assert "lock wait timeout" in message and "rolled back" in message, message
    assert "\n" not in message
    assert {c for c, (_, s) in _memberships(civi_db, g).items() if s == "Added"} == set(ids[:2])

    with CiviCRMWriter(settings, batch_size=2) as w:
        result = w.add_to_group(g, ids, "plan 9")
    assert result == {ids[0]: "already", ids[1]: "already", ids[2]: "done", ids[3]: "done",
                      ids[4]: "done"}
    written = [h[0] for h in _history(civi_db, g) if h[2] == "API"]
    assert sorted(written) == sorted(ids)  # exactly one row per contact


def test_create_contact_as_civicrm_forms_it(civi_db, monkeypatch):
    with civi_db.server.connect(civi_db.name) as admin, admin.cursor() as cur:
        cur.execute("UPDATE civicrm_location_type SET is_default = (id = 2)")
        admin.commit()
    settings = settings_for(civi_db, monkeypatch)
    before = _server_now(civi_db)
    with CiviCRMWriter(settings) as w:
        cid = w.create_contact("  Pebbles@Bedrock.example.org ", " Pebbles ", "Flintstone",
                               tracking="plan 4")
        again = w.create_contact("Pebbles@Bedrock.example.org", "Pebbles", "Flintstone",
                                 tracking="plan 4")
        anon = w.create_contact("anon@example.org", tracking="plan 4")
        only_last = w.create_contact("slate@example.org", None, "Slate", tracking="plan 4")
        assert w.add_to_group(civi_db.group_id, [cid, anon], "plan 4") == {cid: "done",
                                                                           anon: "done"}
    assert again == cid  # a rerun after a crash does not create a second contact
    rows = {r[0]: r[1:] for r in query(
        civi_db, "SELECT id, contact_type, first_name, last_name, display_name, sort_name,"
                 " source, created_date, modified_date, is_deleted, hash"
                 " FROM civicrm_contact ORDER BY id")}
    assert len(rows) == 3
    ctype, first, last, display, sort, source, created, modified, deleted, hsh = rows[cid]
    assert (ctype, first, last, display, sort, source, deleted) == (
        "Individual", "Pebbles", "Flintstone", "Pebbles Flintstone", "Flintstone, Pebbles",
        "civimc-audit: plan 4", 0)
    assert created is not None and created >= before - timedelta(seconds=1)
    assert modified is not None and len(hsh) == 15
    assert rows[anon][1:5] == (None, None, "anon@example.org", "anon@example.org")
    assert rows[only_last][3:5] == ("Slate", "Slate")
    emails = query(civi_db, "SELECT contact_id, email, is_primary, location_type_id, on_hold"
                            " FROM civicrm_email WHERE contact_id = %s", (cid,))
    assert emails == [(cid, "Pebbles@Bedrock.example.org", 1, 2, 0)]


def test_display_names_fall_back_to_email():
    assert display_names("  Ann ", "", "a@x.org") == ("Ann", "Ann")
    assert display_names(None, None, "a@x.org") == ("a@x.org", "a@x.org")


def test_put_on_hold_only_when_configured(civi_db, monkeypatch):
    f = civi_db.fixture
    a = f.contact("C", "Leaned", email="cleaned@example.org")
    b = f.contact("D", "Up", email="CLEANED@example.org")
    f.commit()
    with CiviCRMWriter(settings_for(civi_db, monkeypatch)) as w:
        assert w.put_on_hold("cleaned@example.org") == 0
    assert query(civi_db, "SELECT sum(on_hold) FROM civicrm_email")[0][0] == 0
    settings = settings_for(civi_db, monkeypatch, on_hold_when_cleaned=True,
                            timezone="Europe/London")
    with CiviCRMWriter(settings) as w:
        assert w.put_on_hold("cleaned@example.org") == 2
        assert w.put_on_hold("cleaned@example.org") == 0
    rows = query(civi_db, "SELECT contact_id, on_hold, hold_date FROM civicrm_email ORDER BY id")
    assert [(r[0], r[1]) for r in rows] == [(a, 1), (b, 1)]
    assert all(r[2] is not None for r in rows)


def test_writer_needs_its_own_account(civi_db, monkeypatch):
    settings = settings_for(civi_db, monkeypatch)
    with pytest.raises(ConfigError, match="write_user"):
        CiviCRMWriter(settings.model_copy(update={"write_user": None}))


def test_missing_privilege_names_it_and_the_user_never_the_password(civi_db, monkeypatch):
    f, g = civi_db.fixture, civi_db.group_id
    cid = f.contact("P", "Riv", email="p@example.org")
    f.commit()
    with db_user(civi_db, "SELECT", "INSERT, UPDATE ON civicrm_group_contact") as (user, pw):
        settings = settings_for(civi_db, monkeypatch, write_user=user, write_password=pw)
        with CiviCRMWriter(settings) as w, pytest.raises(CiviCRMError) as err:
            w.add_to_group(g, [cid], "plan 1")
    message = str(err.value)
    assert f"user '{user}' lacks the INSERT privilege on civicrm_subscription_history" in message
    assert pw not in message and "\n" not in message
    assert _memberships(civi_db, g) == {}  # the group_contact insert was rolled back too


def test_wrong_write_password_is_one_line_without_it(civi_db, monkeypatch):
    settings = settings_for(civi_db, monkeypatch, write_password="not-the-password-xyz")
    with db_user(civi_db, "SELECT") as (user, _pw), pytest.raises(CiviCRMError) as err:
        CiviCRMWriter(settings.model_copy(update={"write_user": user}))
    assert "access denied" in str(err.value) and "not-the-password-xyz" not in str(err.value)


def test_changed_since_reports_history_after_the_snapshot(civi_db, monkeypatch):
    f, g = civi_db.fixture, civi_db.group_id
    old, fresh, other_group = (f.contact("O", "Ld", email="o@example.org"),
                               f.contact("F", "Resh", email="f@example.org"),
                               f.contact("X", "Other", email="x@example.org"))
    second = f.group("other", "Other")
    f.add_to_group(old, g, "2024-01-01T00:00:00Z")
    f.add_to_group(fresh, g, "2024-01-01T00:00:00Z")
    f.remove_from_group(fresh, g, "2024-03-01T12:00:01Z")
    f.add_to_group(other_group, second, "2024-03-05T00:00:00Z")
    f.commit()
    with db_user(civi_db, "SELECT") as (user, pw):
        settings = settings_for(civi_db, monkeypatch, user=user, password=pw)
        since = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
        with LiveCiviCRM.open(settings) as live:
            assert live.changed_since(g, [old, fresh, other_group], since) == {fresh}
            assert live.changed_since(g, [old, fresh], since + timedelta(seconds=1)) == set()
            assert live.changed_since(g, [], since) == set()


def test_server_errors_are_mysql_errors():
    # describe_error relies on pymysql putting the server code first.
    exc = pymysql.err.OperationalError(1205, "Lock wait timeout exceeded")
    from civimc_audit.civicrm.db import describe_error
    assert describe_error(exc, "u").startswith("lock wait timeout")


def test_datetime_history_is_written_and_compared_in_site_time(mysql_server, monkeypatch):
    from support.civicrm import variant_db

    with variant_db(mysql_server, "4.x", timezone="Europe/London") as db:
        cid = db.fixture.contact("Old", "Site", email="old@example.org")
        db.fixture.commit()
        with pytest.raises(ConfigError, match="timezone"):
            CiviCRMWriter(settings_for(db, monkeypatch))
        settings = settings_for(db, monkeypatch, timezone="Europe/London")
        before = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=1)
        with CiviCRMWriter(settings) as w:
            assert w.add_to_group(db.group_id, [cid], "plan 2") == {cid: "done"}
        (stored,) = query(db, "SELECT `date` FROM civicrm_subscription_history")
        from zoneinfo import ZoneInfo
        as_utc = stored[0].replace(tzinfo=ZoneInfo("Europe/London")).astimezone(UTC)
        assert before <= as_utc <= datetime.now(UTC) + timedelta(seconds=1)
        with LiveCiviCRM.open(settings) as live:
            assert live.changed_since(db.group_id, [cid], before) == {cid}
            assert live.changed_since(db.group_id, [cid], as_utc) == set()


def test_the_documented_writer_grants_are_enough(civi_db, monkeypatch):
    f, g = civi_db.fixture, civi_db.group_id
    member = f.contact("M", "Ember", email="m@example.org")
    f.add_to_group(member, g, "2024-01-01T00:00:00Z")
    f.commit()
    grants = ("SELECT", "INSERT, UPDATE ON civicrm_group_contact",
              "INSERT ON civicrm_subscription_history", "INSERT ON civicrm_contact",
              "INSERT, UPDATE ON civicrm_email")  # as README.md documents them
    with db_user(civi_db, *grants) as (user, pw):
        settings = settings_for(civi_db, monkeypatch, write_user=user, write_password=pw,
                                on_hold_when_cleaned=True)
        with CiviCRMWriter(settings) as w:
            new = w.create_contact("new@example.org", "New", "Person", tracking="plan 5")
            assert w.add_to_group(g, [new], "plan 5") == {new: "done"}
            assert w.remove_from_group(g, [member], "plan 5") == {member: "done"}
            assert w.put_on_hold("m@example.org") == 1
