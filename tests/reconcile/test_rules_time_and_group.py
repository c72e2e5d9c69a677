"""Time and group kind, through the real path (MariaDB fixture + emulator + CLI).

History dates are TIMESTAMPs that CiviCRM writes in PHP local time under a session time_zone set
to the PHP offset; the toolkit must compare them with Mailchimp's last_changed as UTC instants
whatever the server's default zone is. Smart groups are refused; groups not marked as mailing
lists get a warning.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from support.values import TEST_LIST_ID

PACIFIC = "-08:00"


def write_history_as_civicrm(server, database, contact_id, group_id, local_date, status,
                             zone=PACIFIC):
    """As core does: session time_zone = the PHP offset, date('YmdHis') in local time."""
    conn = server.connect(database=database)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = %s", (zone,))
            cur.execute("INSERT INTO civicrm_subscription_history (contact_id, group_id, `date`,"
                        " method, status) VALUES (%s, %s, %s, 'Admin', %s)",
                        (contact_id, group_id, local_date, status))
            cur.execute("INSERT INTO civicrm_group_contact (group_id, contact_id, status)"
                        " VALUES (%s, %s, %s) ON DUPLICATE KEY UPDATE status = VALUES(status)",
                        (group_id, contact_id, status))
        conn.commit()
    finally:
        conn.close()


def naive_reading(server, database, contact_id):
    """What a reader that trusts the server's default zone would see."""
    conn = server.connect(database=database)
    try:
        with conn.cursor() as cur:
            cur.execute("SET time_zone = @@GLOBAL.time_zone")
            cur.execute("SELECT max(`date`) FROM civicrm_subscription_history WHERE contact_id=%s",
                        (contact_id,))
            return cur.fetchone()[0]
    finally:
        conn.close()


@pytest.fixture
def pacific_server(civi_db):
    """The server's GLOBAL time_zone at -08:00 for the test, restored afterwards."""
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.time_zone")
        old = cur.fetchone()[0]
        cur.execute("SET GLOBAL time_zone = %s", (PACIFIC,))
    try:
        yield civi_db
    finally:
        with civi_db.conn.cursor() as cur:
            cur.execute("SET GLOBAL time_zone = %s", (old,))


def test_history_dates_are_utc_instants_whatever_the_server_zone(pacific_server, emulator,
                                                                make_config, run_cli):
    db = pacific_server
    fx, gid, server = db.fixture, db.group_id, db.server
    # Late: added 15:30 Pacific = 23:30 UTC, after Mailchimp's 20:00 UTC unsubscribe.
    late = fx.contact("Late", "Evening", email="late@example.org")
    # Close: removed 12:00:01 Pacific = 20:00:01 UTC, one second after Mailchimp's subscribe.
    close = fx.contact("Close", "Call", email="close@example.org")
    fx.commit()
    write_history_as_civicrm(server, db.name, late, gid, "2026-03-01 15:30:00", "Added")
    write_history_as_civicrm(server, db.name, close, gid, "2026-02-01 09:00:00", "Added")
    write_history_as_civicrm(server, db.name, close, gid, "2026-03-01 12:00:01", "Removed")
    emulator.add_member(TEST_LIST_ID, "late@example.org", status="unsubscribed",
                        last_changed="2026-03-01T20:00:00+00:00")
    emulator.add_member(TEST_LIST_ID, "close@example.org", status="subscribed",
                        last_changed="2026-03-01T20:00:00+00:00")
    # The premise: read naively, both CiviCRM dates fall before Mailchimp's and the winner flips.
    assert naive_reading(server, db.name, late) == datetime(2026, 3, 1, 15, 30)
    assert naive_reading(server, db.name, close) == datetime(2026, 3, 1, 12, 0, 1)

    config = make_config()
    for cmd in (["snapshot"], ["reconcile"]):
        code, _, err = run_cli("--config", config, *cmd)
        assert code == 0, err
    code, out, err = run_cli("--config", config, "outcomes", "--format", "json")
    assert code == 0, err
    rows = {r["email"]: r for r in json.loads(out)}
    late_row, close_row = rows["late@example.org"], rows["close@example.org"]
    assert late_row["civicrm_changed"] == "2026-03-01T23:30:00Z"
    assert (late_row["winner"], late_row["rule"], late_row["outcome"]) == \
        ("civicrm", "R7", "resubscribe_in_mailchimp")
    assert "CiviCRM added them on 1 Mar 2026 23:30:00 UTC, after Mailchimp unsubscribed on " \
        "1 Mar 2026 20:00:00 UTC" in late_row["reason"]
    assert close_row["civicrm_changed"] == "2026-03-01T20:00:01Z"
    assert (close_row["winner"], close_row["rule"], close_row["outcome"]) == \
        ("civicrm", "R9", "unsubscribe_in_mailchimp")


def test_mailchimp_offsets_are_instants_too(civi_db, emulator, make_config, run_cli):
    """last_changed given with an offset compares as the instant it names."""
    cid = civi_db.fixture.contact("Off", "Set", email="offset@example.org")
    civi_db.fixture.add_to_group(cid, civi_db.group_id, datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    civi_db.fixture.commit()
    # 06:00 at -07:00 is 13:00 UTC: one hour after the CiviCRM add, so Mailchimp wins.
    emulator.add_member(TEST_LIST_ID, "offset@example.org", status="unsubscribed",
                        last_changed="2026-03-01T06:00:00-07:00")
    config = make_config()
    for cmd in (["snapshot"], ["reconcile"]):
        assert run_cli("--config", config, *cmd)[0] == 0
    row = json.loads(run_cli("--config", config, "outcomes", "--format", "json")[1])[0]
    assert row["mailchimp_changed"] == "2026-03-01T13:00:00Z"
    assert (row["winner"], row["rule"]) == ("mailchimp", "R2")


def test_smart_group_is_refused_in_one_line(civi_db, emulator, make_config, run_cli):
    civi_db.group_id = civi_db.fixture.group("smart", "Smart one", saved_search_id=7)
    civi_db.fixture.commit()
    config = make_config()
    for cmd in (["snapshot"], ["check"]):
        code, out, err = run_cli("--config", config, *cmd)
        assert code == 2, (cmd, out, err)
        assert len(err.strip().splitlines()) == 1
        assert "smart group" in err and "Smart one" in err and "Traceback" not in err


def test_group_that_is_not_a_mailing_list_gets_a_warning(civi_db, emulator, make_config, run_cli):
    civi_db.group_id = civi_db.fixture.group("access", "Access only", mailing=False)
    cid = civi_db.fixture.contact("Ann", "Access", email="ann@example.org")
    civi_db.fixture.add_to_group(cid, civi_db.group_id, datetime(2026, 1, 1, tzinfo=UTC))
    civi_db.fixture.commit()
    config = make_config()
    code, out, err = run_cli("--config", config, "snapshot")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "not marked as a mailing list" in warnings[0]
    assert "Access only" in warnings[0] and "warning" not in out
    code, out, err = run_cli("--config", config, "check")
    assert code == 0, err
    assert "not marked as a mailing list" in err
    # A mailing list gets no warning.
    civi_db.group_id = civi_db.fixture.group("news2", "News two")
    civi_db.fixture.commit()
    code, _, err = run_cli("--config", make_config(), "snapshot")
    assert code == 0 and "warning" not in err
