"""Findings 1, 2, 4, 8, 9, 10, 11 of the apply-path safety review: a person changed at either
side after the snapshot is skipped as `stale` — on the first apply and on a resumed one — and
never overwritten; against MariaDB and the emulator over HTTP, through the CLI."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import pytest
from support.apply import (
    cli_ok,
    group_status,
    hold_apply_lock,
    journal_states,
    plan_and_freeze,
    posted,
    start_apply,
)
from support.values import TEST_LIST_ID

from civimc_audit.civicrm.writer import CiviCRMWriter
from civimc_audit.config import load_config
from civimc_audit.store import Store
from civimc_sandbox.demo import seed_email


def later() -> datetime:
    return datetime.now(UTC) + timedelta(seconds=5)


def sql(civi_db, statement, *args):
    with civi_db.conn.cursor() as cur:
        cur.execute(statement, args)
    civi_db.conn.commit()


def test_resumed_items_are_checked_for_drift_before_being_sent_again(seeded, run_cli,
                                                                    emulator):
    """Finding 1: one 500 on the batch call leaves Fred and Betty `sending`; both then change
    at Mailchimp. The next apply must not unsubscribe Fred again nor send Betty subscribed."""
    config, _ = seeded
    config.write_text(config.read_text().replace("[mailchimp]", "[mailchimp]\nretries = 0"))
    plan_and_freeze(run_cli, config, "--allow-pending")
    emulator.faults.match = lambda method, path: method == "POST"
    emulator.faults.queue("500", 1)
    code, _, err = run_cli("--config", config, "apply", "--execute")
    assert code == 3, err
    states = journal_states(config)
    assert states[seed_email("Fred")] == states[seed_email("Betty")] == "sending"
    emulator.faults.reset()
    emulator.update_member(TEST_LIST_ID, seed_email("Fred"), status="subscribed",
                           last_changed=later())
    emulator.add_member(TEST_LIST_ID, seed_email("Betty"), status="unsubscribed",
                        last_changed=later())
    emulator.clear_requests()
    code, out, err = run_cli("--config", config, "apply", "--execute")
    assert code == 1, (out, err)
    states = journal_states(config)
    assert states[seed_email("Fred")] == states[seed_email("Betty")] == "stale"
    assert not posted(emulator)
    assert emulator.get_member(TEST_LIST_ID, seed_email("Fred"))["status"] == "subscribed"
    assert emulator.get_member(TEST_LIST_ID, seed_email("Betty"))["status"] == "unsubscribed"


@pytest.mark.parametrize("who,change", [
    ("Betty", "UPDATE civicrm_contact SET is_deleted = 1, do_not_email = 1 WHERE id = %s"),
    ("Pebbles", "UPDATE civicrm_contact SET is_deleted = 1 WHERE id = %s"),
    ("Betty", "UPDATE civicrm_contact SET do_not_email = 1 WHERE id = %s"),
    ("Betty", "UPDATE civicrm_contact SET is_opt_out = 1 WHERE id = %s"),
    ("Pebbles", "UPDATE civicrm_contact SET is_deceased = 1 WHERE id = %s"),
    ("Betty", "UPDATE civicrm_email SET on_hold = 1 WHERE contact_id = %s"),
    ("Barney", "UPDATE civicrm_email SET email = 'barney@elsewhere.example.org'"
               " WHERE contact_id = %s"),
    ("Pebbles", "INSERT INTO civicrm_email (contact_id, location_type_id, email, is_primary)"
                " VALUES (%s, 1, 'pebbles@second.example.org', 0)"),
    ("Barney", "UPDATE civicrm_group_contact SET status = 'Removed' WHERE contact_id = %s"),
    # A merge of Wilma into Barney: her history moves to him with its old dates.
    ("Barney", "UPDATE civicrm_subscription_history SET contact_id = %s"
               " WHERE contact_id = (SELECT id FROM civicrm_contact WHERE first_name = 'Wilma')"),
])
def test_civicrm_changes_without_history_make_the_person_stale(seeded, run_cli, emulator,
                                                               civi_db, who, change):
    """Finding 2: trashing, consent fields, holds, email changes and membership changes
    written without a subscription-history row are drift too."""
    config, ids = seeded
    plan_and_freeze(run_cli, config)
    before = {"Betty": emulator.get_member(TEST_LIST_ID, seed_email("Betty")),
              "Pebbles": group_status(civi_db, ids["Pebbles"]),
              "Barney": group_status(civi_db, ids["Barney"])}
    sql(civi_db, change, ids[who])
    code, out, err = run_cli("--config", config, "apply", "--execute", "--no-verify")
    assert code == 1, (out, err)
    states = journal_states(config)
    assert states.pop(seed_email(who)) == "stale", out
    assert set(states.values()) == {"done"}
    assert "changed in CiviCRM since the snapshot" in out
    if who == "Betty":
        assert emulator.get_member(TEST_LIST_ID, seed_email("Betty")) is None is before["Betty"]
    elif who == "Pebbles":
        assert group_status(civi_db, ids["Pebbles"]) == before["Pebbles"]
    elif "group_contact" not in change:
        assert group_status(civi_db, ids["Barney"]) == before["Barney"]


def test_writer_treats_a_trashed_contact_as_missing(civi_db, make_config):
    config = load_config(make_config())
    trashed = civi_db.fixture.contact("Tess", "Trashed", email="tess@example.org",
                                      is_deleted=True)
    civi_db.fixture.commit()
    with CiviCRMWriter(config.civicrm) as w:
        assert w.add_to_group(civi_db.group_id, [trashed], "t") == {trashed: "missing"}
    assert group_status(civi_db, trashed) is None


def test_a_member_archived_after_the_snapshot_is_stale(seeded, run_cli, emulator):
    """Finding 4: archived members missing from the default listing are still seen as drift."""
    config, _ = seeded
    emulator.archived_in_default_listing = False
    plan_and_freeze(run_cli, config)
    emulator.update_member(TEST_LIST_ID, seed_email("Fred"), status="archived",
                           last_changed=later())
    code, out, err = run_cli("--config", config, "apply", "--execute", "--no-verify")
    assert code == 1, (out, err)
    assert journal_states(config)[seed_email("Fred")] == "stale"
    assert (seed_email("Fred"), "unsubscribed") not in posted(emulator)
    assert emulator.get_member(TEST_LIST_ID, seed_email("Fred"))["status"] == "archived"


def test_allow_pending_only_resends_flagged_resubscribes(seeded, run_cli, emulator):
    """Finding 8: a plain subscribe refused as in compliance state is not turned into a
    confirmation email, even with --allow-pending (reviewers consented only for the
    needs_confirmation resubscribes)."""
    config, _ = seeded
    plan_and_freeze(run_cli, config, "--allow-pending")
    # Betty unsubscribed long ago but the snapshot did not see her (not drift by date).
    emulator.add_member(TEST_LIST_ID, seed_email("Betty"), status="unsubscribed",
                        last_changed="2026-01-02T00:00:00+00:00")
    code, out, err = run_cli("--config", config, "apply", "--execute", "--no-verify")
    assert code == 1, (out, err)
    assert journal_states(config)[seed_email("Betty")] == "failed"
    assert (seed_email("Betty"), "pending") not in posted(emulator)
    assert emulator.get_member(TEST_LIST_ID, seed_email("Betty"))["status"] == "unsubscribed"


def test_drift_uses_the_servers_clocks_not_the_local_one(seeded, run_cli, emulator, civi_db):
    """Finding 9: the local clock was an hour ahead when the snapshots were taken; changes just
    after the snapshots (by the servers' clocks) are still drift."""
    config, ids = seeded
    for cmd in (["snapshot"], ["reconcile"], ["plan"]):
        cli_ok(run_cli, config, *cmd)
    # (Before freezing: the snapshots' registry rows are inside the plan's hash.)
    with Store(load_config(config).store_file) as store:
        store.con.execute("UPDATE snapshots SET started_at = started_at + INTERVAL 1 HOUR")
    cli_ok(run_cli, config, "approve", "--all", "--reviewer", "Ada")
    cli_ok(run_cli, config, "approve", "--freeze", "--reviewer", "Ada")
    emulator.update_member(TEST_LIST_ID, seed_email("Fred"), status="subscribed",
                           last_changed=later())
    civi_db.fixture.history(ids["Barney"], civi_db.group_id, later(), "Added", method="Admin")
    civi_db.fixture.commit()
    code, out, err = run_cli("--config", config, "apply", "--execute", "--no-verify")
    assert code == 1, (out, err)
    states = journal_states(config)
    assert states[seed_email("Fred")] == states[seed_email("Barney")] == "stale"


def test_an_apply_of_another_plan_meanwhile_is_refused(seeded, run_cli):
    """Finding 10: the lock is per store (one audience), not per plan."""
    config, _ = seeded
    plan_and_freeze(run_cli, config)
    with hold_apply_lock(config, 7, 99):
        code, _, err = run_cli("--config", config, "apply", "--execute")
    assert code == 2 and "plan 7 is already being applied" in err, err
    assert set(journal_states(config).values()) == {""}


def _create_killed_before_the_call(emulator, make_config, run_cli):
    """A plan creating the contact of Mailchimp-only nova@example.org, its apply killed just
    before the CiviCRM call; returns the config."""
    emulator.add_member(TEST_LIST_ID, "nova@example.org", status="subscribed",
                        last_changed="2026-01-03T00:00:00+00:00")
    config = make_config()
    plan_and_freeze(run_cli, config)
    proc = start_apply(config, "civicrm_before_call:1")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    return config


def _contact_the_killed_run_made(config) -> int:
    """What the killed run would have made: nova's contact with the plan's tracking note."""
    with CiviCRMWriter(load_config(config).civicrm) as w:
        return w.create_contact("nova@example.org", "Nova", None,
                                tracking="civimc-audit plan 1")


def test_settling_an_interrupted_create_finds_its_own_contact(civi_db, emulator, make_config,
                                                              run_cli):
    """Finding 11: a contact for the same email created elsewhere is never taken for the one
    this plan created; with none of ours, a contact created meanwhile makes the item stale."""
    config = _create_killed_before_the_call(emulator, make_config, run_cli)
    assert journal_states(config)["nova@example.org"] == "sending"
    other = civi_db.fixture.contact("Nova", "Elsewhere", email="nova@example.org")
    civi_db.fixture.commit()
    code, out, err = run_cli("--config", config, "apply", "--execute", "--no-verify")
    assert code == 1, (out, err)
    assert journal_states(config)["nova@example.org"] == "stale"
    assert group_status(civi_db, other) is None


def test_settling_an_interrupted_create_adds_the_contact_it_made(civi_db, emulator,
                                                                 make_config, run_cli):
    config = _create_killed_before_the_call(emulator, make_config, run_cli)
    # The killed run had created its contact but not yet added it; then someone else made one.
    ours = _contact_the_killed_run_made(config)
    other = civi_db.fixture.contact("Nova", "Elsewhere", email="nova@example.org")
    civi_db.fixture.commit()
    assert other > ours
    cli_ok(run_cli, config, "apply", "--execute", "--no-verify")
    assert journal_states(config)["nova@example.org"] == "done"
    assert group_status(civi_db, ours) == "Added"
    assert group_status(civi_db, other) is None


@pytest.fixture
def seeded(civi_db, emulator, make_config):
    from support.apply import YEAR

    from civimc_sandbox.demo import load_seed

    ids = load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)
    return make_config(), ids


def test_a_member_whose_email_changed_at_mailchimp_is_stale(seeded, run_cli, emulator):
    """The member's id follows the address; its Mailchimp contact_id does not."""
    config, _ = seeded
    plan_and_freeze(run_cli, config)
    emulator.update_member(TEST_LIST_ID, seed_email("Fred"),
                           email_address="fred.new@bedrock.example.org", last_changed=later())
    code, out, err = run_cli("--config", config, "apply", "--execute", "--no-verify")
    assert code == 1, (out, err)
    assert journal_states(config)[seed_email("Fred")] == "stale"
    assert "email changed at Mailchimp" in out
    assert (seed_email("Fred"), "unsubscribed") not in posted(emulator)
    assert emulator.get_member(TEST_LIST_ID, seed_email("Fred")) is None


def test_a_contact_the_interrupted_create_made_then_trashed_is_not_made_again(
        civi_db, emulator, make_config, run_cli):
    config = _create_killed_before_the_call(emulator, make_config, run_cli)
    ours = _contact_the_killed_run_made(config)
    sql(civi_db, "UPDATE civicrm_contact SET is_deleted = 1 WHERE id = %s", ours)
    code, out, err = run_cli("--config", config, "apply", "--execute", "--no-verify")
    assert code == 1, (out, err)
    assert journal_states(config)["nova@example.org"] == "stale"
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM civicrm_email WHERE email = 'nova@example.org'")
        assert cur.fetchone()[0] == 1
    assert group_status(civi_db, ours) is None
