"""Issue 20 point 5: everything apply relies on is inside the freeze hash (each approved item's
whole row — payload, ids and the state it was planned from —, the plan, its snapshots' registry
rows), and a target that vanished after freezing (the CiviCRM group, the Mailchimp audience)
makes its items stale before anything is written: no orphan contact, no failing later runs.
Against MariaDB and the emulator, through the CLI."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from support.apply import YEAR, cli_ok, group_status, journal_states, plan_and_freeze, posted
from support.values import TEST_LIST_ID

from civimc_audit.config import load_config
from civimc_audit.store import Store
from civimc_sandbox.demo import load_seed, seed_email

# An edit of each of these after freezing must be refused (column, SQL giving the new value).
EDITS = [
    ("plan_items", "mailchimp_status", "'cleaned'"),
    ("plan_items", "civicrm_status", "'Removed'"),
    ("plan_items", "mailchimp_changed", "mailchimp_changed + INTERVAL 1 DAY"),
    ("plan_items", "civicrm_changed", "civicrm_changed + INTERVAL 1 DAY"),
    ("plan_items", "flags", "'needs_confirmation'"),
    ("plan_items", "outcome", "'add_to_mailchimp'"),
    ("plan_items", "rule", "'R6'"),
    ("plan_items", "reason", "'edited'"),
    ("plan_items", "display_name", "'Someone Else'"),
    ("plan_items", "person_id", "person_id + 100"),
    ("plan_items", "member_id", "'0123456789abcdef0123456789abcdef'"),
    ("plan_items", "payload", "'{\"contact_id\": 1, \"group_id\": 99}'"),
    ("plans", "group_id", "group_id + 1"),
    ("plans", "list_id", "'0000000000'"),
    ("snapshots", "meta", "'{}'"),
    ("snapshots", "started_at", "started_at - INTERVAL 1 DAY"),
    # the snapshot rows of the plan's people, which drift compares the live systems with
    ("civicrm_email", "on_hold", "1"),
    ("civicrm_contact", "do_not_email", "true"),
    ("civicrm_group_contact", "status", "'Removed'"),
    ("civicrm_subscription_history", "date", "date + INTERVAL 1 DAY"),
    ("mailchimp_member", "status", "'archived'"),
]


def new_member(emulator, email="newbie@example.org"):
    """A member no contact has (R3: a contact is created and added to the group)."""
    emulator.add_member(TEST_LIST_ID, email, status="subscribed",
                        last_changed=datetime(YEAR, 1, 9, tzinfo=UTC),
                        merge_fields={"FNAME": "New", "LNAME": "Bie"})
    return email


@pytest.fixture
def seeded(civi_db, emulator, make_config):
    ids = load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)
    new_member(emulator)
    return make_config(), ids


def test_every_column_apply_relies_on_is_inside_the_hash(seeded, run_cli):
    config, _ = seeded
    plan_and_freeze(run_cli, config)
    store_file = load_config(config).store_file
    for table, column, value in EDITS:
        where = {"plan_items": "plan_id = 1", "plans": "id = 1",
                 "snapshots": "id = (SELECT min(id) FROM snapshots)"}.get(table, "true")
        with Store(store_file) as store:
            before = store.con.execute(f"SELECT * FROM {table} WHERE {where}").df()
            store.con.execute(f"CREATE TABLE saved AS SELECT * FROM {table} WHERE {where}")
            store.con.execute(f"UPDATE {table} SET {column} = {value} WHERE {where}")
        code, _, err = run_cli("--config", config, "apply", "--execute")
        assert code == 2 and "no longer matches the hash" in err, (table, column, err)
        with Store(store_file) as store:
            store.con.execute(f"DELETE FROM {table} WHERE {where}")
            store.con.execute(f"INSERT INTO {table} SELECT * FROM saved")
            store.con.execute("DROP TABLE saved")
            assert len(store.con.execute(f"SELECT * FROM {table} WHERE {where}").df()) == len(before)
    # Restored, the plan applies (a dry run checks the hash too).
    cli_ok(run_cli, config, "apply")


def contacts(civi_db) -> int:
    civi_db.conn.commit()
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM civicrm_contact")
        return cur.fetchone()[0]


def test_a_deleted_group_makes_its_items_stale_before_anything_is_written(
        seeded, run_cli, emulator, civi_db):
    config, ids = seeded
    plan_and_freeze(run_cli, config)
    before = contacts(civi_db)
    with civi_db.conn.cursor() as cur:  # an admin deletes the group (CiviCRM deletes its rows)
        cur.execute("DELETE FROM civicrm_group_contact WHERE group_id = %s", (civi_db.group_id,))
        cur.execute("DELETE FROM civicrm_subscription_history WHERE group_id = %s",
                    (civi_db.group_id,))
        cur.execute("DELETE FROM civicrm_group WHERE id = %s", (civi_db.group_id,))
    civi_db.conn.commit()
    out = cli_ok(run_cli, config, "apply", "--execute", code=1)
    # Every item: sent to the group, or decided by what the group said (Betty's and Fred's).
    assert set(journal_states(config).values()) == {"stale"}
    assert not posted(emulator)
    assert contacts(civi_db) == before  # no orphan contact
    with Store(load_config(config).store_file) as store:
        details = {r[0] for r in store.con.execute(
            "SELECT detail FROM journal WHERE state = 'stale'").fetchall()}
    assert details == {f"the CiviCRM group {civi_db.group_id} no longer exists: nothing was sent"}
    assert "stale" in out
    # Every later run of the plan has nothing left to do, and says so without failing.
    code, _, err = run_cli("--config", config, "apply", "--execute")
    assert code in (0, 1) and "Traceback" not in err, err
    assert contacts(civi_db) == before


def test_a_deleted_audience_makes_the_mailchimp_items_stale(seeded, run_cli, emulator, civi_db):
    config, ids = seeded
    plan_and_freeze(run_cli, config)
    del emulator.lists[TEST_LIST_ID]
    emulator.clear_requests()
    cli_ok(run_cli, config, "apply", "--execute", code=1)
    states = journal_states(config)
    assert states[seed_email("Betty")] == "stale" and states[seed_email("Fred")] == "stale"
    # Barney's removal was decided by his member's status: stale too; Pebbles' addition too.
    assert set(states.values()) == {"stale"}
    assert group_status(civi_db, ids["Barney"]) == "Added"
    assert not posted(emulator)


def test_a_member_deleted_at_mailchimp_since_the_snapshot_is_stale(seeded, run_cli, emulator,
                                                                   civi_db):
    """A permanently deleted member is in no listing of changes: apply looks each member of a
    batch up, so neither Barney's removal (decided by his member) nor Fred's unsubscribe (which
    would make a new member) is sent."""
    config, ids = seeded
    plan_and_freeze(run_cli, config)
    for name in ("Barney", "Fred"):
        emulator.delete_member(TEST_LIST_ID, seed_email(name), permanent=True)
    emulator.clear_requests()
    cli_ok(run_cli, config, "apply", "--execute", "--no-verify", code=1)
    states = journal_states(config)
    assert states[seed_email("Barney")] == states[seed_email("Fred")] == "stale"
    assert states[seed_email("Betty")] == "done"
    assert group_status(civi_db, ids["Barney"]) == "Added"
    assert all(email != seed_email("Fred") for email, _ in posted(emulator))
    assert emulator.get_member(TEST_LIST_ID, seed_email("Fred")) is None
    with Store(load_config(config).store_file) as store:
        details = {r[0] for r in store.con.execute(
            "SELECT detail FROM journal WHERE state = 'stale'").fetchall()}
    assert details == {"the Mailchimp member no longer exists: left for a new audit"}
