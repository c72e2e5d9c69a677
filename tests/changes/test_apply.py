"""Points 4 (apply side), 5, 7 and 8 of issue 6: dry run, execute, drift, backups, compliance
refusals, per-member errors, verify and convergence, against MariaDB and the emulator."""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest
from support.apply import (
    YEAR,
    cli_ok,
    group_status,
    hold_apply_lock,
    hold_apply_lock_in_child,
    journal_states,
    plan_and_freeze,
    posted,
)
from support.apply_population import add_fake_address, load_every_rule
from support.values import TEST_LIST_ID

from civimc_audit.config import load_config
from civimc_audit.store import Store
from civimc_audit.store.lock import lock_path
from civimc_sandbox.demo import load_seed, seed_email
from civimc_sandbox.emulator import member_hash


def history(civi_db, contact_id):
    civi_db.conn.commit()
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT status, method, tracking FROM civicrm_subscription_history WHERE"
                    " contact_id=%s AND group_id=%s ORDER BY id", (contact_id, civi_db.group_id))
        return cur.fetchall()


@pytest.fixture
def seeded(civi_db, emulator, make_config):
    ids = load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)
    return make_config("lock_wait_seconds = 0"), ids


def test_dry_run_lists_what_would_be_sent_and_sends_nothing(seeded, run_cli, emulator, civi_db):
    config, ids = seeded
    plan_and_freeze(run_cli, config)
    emulator.clear_requests()
    out = cli_ok(run_cli, config, "apply")
    assert "dry run of plan 1" in out and "nothing is sent" in out
    assert f"would send: mailchimp subscribe         {seed_email('Betty')} -> subscribed" in out
    assert f"would send: mailchimp unsubscribe       {seed_email('Fred')} -> unsubscribed" in out
    assert f"remove_from_group contact {ids['Barney']}" in out
    assert out.count("would send:") == 4
    assert not posted(emulator)
    assert group_status(civi_db, ids["Barney"]) == "Added"


def test_apply_refuses_unfrozen_and_tampered_plans(seeded, run_cli):
    config, _ = seeded
    for cmd in (["snapshot"], ["reconcile"], ["plan"]):
        cli_ok(run_cli, config, *cmd)
    cli_ok(run_cli, config, "approve", "--all", "--reviewer", "Ada")
    code, _, err = run_cli("--config", config, "apply", "1", "--execute")
    assert code == 2 and "is not frozen" in err
    code, _, err = run_cli("--config", config, "apply", "--execute")
    assert code == 2 and "no frozen plan" in err
    cli_ok(run_cli, config, "approve", "--freeze", "--reviewer", "Ada")
    with Store(load_config(config).store_file) as store:
        store.con.execute("UPDATE plan_items SET payload = replace(payload, 'unsubscribed',"
                          " 'subscribed')")
    code, _, err = run_cli("--config", config, "apply", "--execute")
    assert code == 2 and "no longer matches the hash" in err


def test_execute_applies_backs_up_verifies_and_never_sends_twice(seeded, run_cli, emulator,
                                                                 civi_db):
    config, ids = seeded
    plan_and_freeze(run_cli, config)
    out = cli_ok(run_cli, config, "apply", "--execute")
    assert "done 4" in out
    assert "plan 1: all 4 applied items agree on both sides" in out
    assert emulator.get_member(TEST_LIST_ID, seed_email("Betty"))["status"] == "subscribed"
    assert emulator.get_member(TEST_LIST_ID, seed_email("Betty"))["merge_fields"]["FNAME"] == "Betty"
    assert emulator.get_member(TEST_LIST_ID, seed_email("Fred"))["status"] == "unsubscribed"
    assert group_status(civi_db, ids["Barney"]) == "Removed"
    assert group_status(civi_db, ids["Pebbles"]) == "Added"
    assert history(civi_db, ids["Pebbles"]) == (("Added", "API", "civimc-audit plan 1"),)
    # The backup beside the run: Parquet of both snapshots plus the audience as an import CSV.
    (run,) = (config.parent / "runs").glob("apply-plan1-*")
    backup = run / "backup"
    civi = pd.read_parquet(backup / "civicrm-snapshot-1" / "civicrm_group_contact.parquet")
    assert set(civi["contact_id"]) == {ids["Wilma"], ids["Barney"], ids["Fred"], ids["Betty"]}
    members = pd.read_parquet(backup / "mailchimp-snapshot-2" / "mailchimp_member.parquet")
    assert len(members) == 4
    imp = pd.read_csv(backup / "mailchimp-snapshot-2" / "mailchimp-import.csv")
    assert list(imp.columns[:3]) == ["Email Address", "First Name", "Last Name"]
    assert seed_email("Fred") in set(imp["Email Address"])
    assert json.loads((run / "summary.json").read_text())["counts"] == {"done": 4}
    # A second apply of a finished plan sends nothing.
    before = posted(emulator)
    out = cli_ok(run_cli, config, "apply", "--execute")
    assert "nothing to send" in out
    assert posted(emulator) == before
    assert len(history(civi_db, ids["Pebbles"])) == 1
    out = cli_ok(run_cli, config, "verify")
    assert "nothing to do" in out


def test_drift_skips_people_changed_since_the_snapshot(seeded, run_cli, emulator, civi_db):
    config, ids = seeded
    plan_and_freeze(run_cli, config)
    later = datetime.now(UTC) + timedelta(seconds=5)
    # Fred re-confirmed at Mailchimp, and someone touched Barney in CiviCRM after the snapshot.
    emulator.update_member(TEST_LIST_ID, seed_email("Fred"), status="subscribed",
                           last_changed=later)
    civi_db.fixture.history(ids["Barney"], civi_db.group_id, later, "Added", method="Admin")
    civi_db.fixture.commit()
    code, out, err = run_cli("--config", config, "apply", "--execute")
    assert code == 1, err
    assert "2 skipped as stale" in out
    assert f"{seed_email('Fred')} — changed since the snapshot: changed at Mailchimp" in out
    assert "new CiviCRM group history since the snapshot" in out
    states = journal_states(config)
    assert states == {seed_email("Barney"): "stale", seed_email("Fred"): "stale",
                      seed_email("Betty"): "done", seed_email("Pebbles"): "done"}
    assert (seed_email("Fred"), "unsubscribed") not in posted(emulator)
    assert emulator.get_member(TEST_LIST_ID, seed_email("Fred"))["status"] == "subscribed"
    assert group_status(civi_db, ids["Barney"]) == "Added"
    # Stale items are final for this plan: a new audit handles them.
    before = posted(emulator)
    code, out, _ = run_cli("--config", config, "apply", "--execute")
    assert code == 1 and "nothing to send" in out and posted(emulator) == before


def test_a_new_contact_created_elsewhere_meanwhile_is_stale(civi_db, emulator, make_config,
                                                            run_cli):
    emulator.add_member(TEST_LIST_ID, "nova@example.org", status="subscribed",
                        last_changed="2026-01-03T00:00:00+00:00")
    config = make_config()
    plan_and_freeze(run_cli, config)
    civi_db.fixture.contact("Nova", "Elsewhere", email="Nova@example.org")
    civi_db.fixture.commit()
    code, out, _ = run_cli("--config", config, "apply", "--execute", "--no-verify")
    assert code == 1 and "a CiviCRM contact with this email exists" in out


def compliance_setup(civi_db, emulator, make_config):
    ids = load_every_rule(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID)
    ids["fake"] = add_fake_address(civi_db.fixture, civi_db.group_id)
    return make_config(), ids


def test_compliance_refusal_is_reported_and_other_errors_do_not_stop_the_rest(
        civi_db, emulator, make_config, run_cli):
    config, ids = compliance_setup(civi_db, emulator, make_config)
    plan_and_freeze(run_cli, config)
    code, out, err = run_cli("--config", config, "apply", "--execute")
    assert code == 1, err
    states = journal_states(config)
    assert states.pop("r7@example.org") == "failed"
    assert states.pop("fay@example.invalid") == "failed"
    assert set(states.values()) == {"done"}
    assert "r7@example.org — Member In Compliance State" in out
    assert "fay@example.invalid — " in out and "looks fake" in out
    # Never forced, and no confirmation email without the reviewers' consent.
    assert emulator.get_member(TEST_LIST_ID, "r7@example.org")["status"] == "unsubscribed"
    assert ("r7@example.org", "pending") not in posted(emulator)
    assert emulator.get_member(TEST_LIST_ID, "r7a@example.org")["status"] == "subscribed"
    # Verify: what was applied agrees; the two refused people still need a change.
    assert "resubscribe_in_mailchimp 1, add_to_mailchimp 1" in out
    assert "all 11 applied items agree on both sides" in out


def test_compliance_refusal_is_resent_as_pending_when_approved_so(civi_db, emulator, make_config,
                                                                  run_cli):
    config, ids = compliance_setup(civi_db, emulator, make_config)
    plan_and_freeze(run_cli, config, "--allow-pending")
    code, out, err = run_cli("--config", config, "apply", "--execute")
    assert code == 1, err  # only the fake address is left
    states = journal_states(config)
    assert states["r7@example.org"] == "done"
    assert emulator.get_member(TEST_LIST_ID, "r7@example.org")["status"] == "pending"
    sent = posted(emulator)
    assert sent[("r7@example.org", "subscribed")] == 1 and sent[("r7@example.org", "pending")] == 1
    with Store(load_config(config).store_file) as store:
        rows = store.con.execute(
            "SELECT j.state, j.title, j.detail FROM journal j JOIN plan_items i USING (plan_id,"
            " item_id) WHERE i.email = 'r7@example.org' ORDER BY seq").fetchall()
    assert [r[0] for r in rows] == ["sending", "sending", "done"]
    assert rows[1][1] == "Member In Compliance State" and "pending" in rows[2][2]


def test_fully_approved_plan_converges_on_every_rule(civi_db, emulator, make_config, run_cli):
    load_every_rule(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID)
    config = make_config()
    plan_and_freeze(run_cli, config, "--allow-pending")
    with Store(load_config(config).store_file) as store:
        before = store.reconciliation(1)["counts"]
        rules = {r[0] for r in store.con.execute("SELECT DISTINCT rule FROM outcomes").fetchall()}
    assert rules == {f"R{n}" for n in range(1, 11)}
    assert before["cannot_sync"] == 3
    out = cli_ok(run_cli, config, "apply", "--execute")
    n_items = sum(v for k, v in before.items() if k not in ("no_change", "cannot_sync"))
    assert f"all {n_items} applied items agree on both sides" in out
    out = cli_ok(run_cli, config, "verify")
    with Store(load_config(config).store_file) as store:
        rec = store.reconciliation()
        rows = store.con.execute("SELECT outcome, count(*) FROM outcomes WHERE"
                                 " reconciliation_id = ? GROUP BY 1", [rec["id"]]).fetchall()
    # Only what could never be synced is left: the sync's rule finds nothing to do.
    assert dict(rows).keys() == {"no_change", "cannot_sync"}
    assert dict(rows)["cannot_sync"] == before["cannot_sync"]
    assert "cannot_sync 3" in out and "all" in out
    # A new contact was created for the Mailchimp-only subscriber, in the group, once.
    civi_db.conn.commit()
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT c.id FROM civicrm_contact c JOIN civicrm_email e ON e.contact_id=c.id"
                    " WHERE e.email = 'nova@example.org'")
        (nova,), = cur.fetchall()
    assert group_status(civi_db, nova) == "Added"
    assert emulator.get_member(TEST_LIST_ID, "r7@example.org")["status"] == "pending"
    assert emulator.get_member(TEST_LIST_ID, member_hash("add2@example.org"))["status"] == \
        "subscribed"


def test_a_held_lock_refuses_a_second_apply_and_a_killed_holder_frees_it(seeded, run_cli):
    config, _ = seeded
    plan_and_freeze(run_cli, config)
    with hold_apply_lock(config, 1, 99):
        code, _, err = run_cli("--config", config, "apply", "--execute")
    assert code == 2 and "`apply` (plan 1, run 99)" in err and str(os.getpid()) in err
    assert "did not start and changed nothing" in err
    holder = hold_apply_lock_in_child(config, 1)
    code, _, err = run_cli("--config", config, "apply", "--execute")
    assert code == 2 and f"pid {holder.pid}" in err
    holder.send_signal(signal.SIGKILL)
    holder.wait(30)
    out = cli_ok(run_cli, config, "apply", "--execute")  # at once: the kernel dropped the lock
    assert "done 4" in out
    assert not lock_path(load_config(config).store_file).exists()


def test_export_writes_parquet_and_mailchimp_import_csv(seeded, run_cli, tmp_path):
    config, _ = seeded
    cli_ok(run_cli, config, "snapshot")
    out = cli_ok(run_cli, config, "export", "2", "--format", "csv", "--out", tmp_path / "mc")
    assert "mailchimp-import.csv" in out
    imp = pd.read_csv(tmp_path / "mc" / "mailchimp-import.csv")
    assert list(imp.columns[:3]) == ["Email Address", "First Name", "Last Name"]
    assert list(imp.columns[-2:]) == ["Status", "Last Changed"]
    assert imp.set_index("Email Address").loc[seed_email("Barney"), "Status"] == "unsubscribed"
    out = cli_ok(run_cli, config, "export", "1")
    folder = config.parent / "runs" / "exports" / "civicrm-snapshot-1"
    assert (folder / "civicrm_contact.parquet").exists()
    assert len(pd.read_parquet(folder / "civicrm_contact.parquet")) == 5
    code, _, err = run_cli("--config", config, "export", "9")
    assert code == 2 and "no snapshot 9" in err


def test_a_call_whose_answer_is_lost_is_settled_by_reading_not_resent(seeded, run_cli, emulator,
                                                                     civi_db):
    config, ids = seeded
    config.write_text(config.read_text().replace("[mailchimp]", "[mailchimp]\nretries = 1"))
    plan_and_freeze(run_cli, config)
    emulator.faults.match = lambda method, path: method == "POST"
    # Mailchimp makes the changes but the answer is lost; the client's one retry is dropped
    # before it arrives, and the client gives up.
    emulator.faults.queue("drop-after", 1)
    emulator.faults.queue("drop", 1)
    code, out, err = run_cli("--config", config, "apply", "--execute")
    assert code == 3 and "apply stopped" in err and "run apply again" in err
    assert emulator.get_member(TEST_LIST_ID, seed_email("Betty"))["status"] == "subscribed"
    states = journal_states(config)
    assert states[seed_email("Betty")] == states[seed_email("Fred")] == "sending"
    out = cli_ok(run_cli, config, "apply", "--execute")
    assert "done 4" in out and "all 4 applied items agree" in out
    assert posted(emulator) == Counter({(seed_email("Betty"), "subscribed"): 1,
                                        (seed_email("Fred"), "unsubscribed"): 1})
    with Store(load_config(config).store_file) as store:
        details = [r[0] for r in store.con.execute(
            "SELECT detail FROM journal WHERE state = 'done' AND item_id IN (SELECT item_id FROM"
            " plan_items WHERE target = 'mailchimp')").fetchall()]
    assert all("confirmed after an interrupted run" in d for d in details)


def test_a_member_cleaned_at_mailchimp_leaves_the_group_with_the_address_on_hold(
        civi_db, emulator, make_config, run_cli):
    """With [civicrm] on_hold_when_cleaned, removing someone because Mailchimp cleaned their
    address also puts that contact's rows of the address on hold (padding and case aside), as
    the sync's webhook does; another contact's row of the same address is left alone."""
    f, g = civi_db.fixture, civi_db.group_id
    cid = f.contact("Clea", "Ned", email=" Clea.Ned@Example.org\t")
    f.email(cid, "other@example.org")
    twin = f.contact("Twin", "Ned", email="clea.ned@example.org")
    f.add_to_group(cid, g, "2024-01-01T00:00:00Z")
    f.commit()
    emulator.add_member(TEST_LIST_ID, "clea.ned@example.org", status="cleaned",
                        last_changed="2025-03-01T00:00:00+00:00")
    config = make_config()
    config.write_text(config.read_text().replace(
        f"group_id = {g}\n", f"group_id = {g}\non_hold_when_cleaned = true\n", 1))
    plan_and_freeze(run_cli, config)
    cli_ok(run_cli, config, "apply", "--execute", "--no-verify")
    assert group_status(civi_db, cid) == "Removed"
    civi_db.conn.commit()
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT contact_id, email, on_hold, hold_date IS NOT NULL FROM civicrm_email"
                    " WHERE contact_id IN (%s, %s) ORDER BY id", (cid, twin))
        rows = cur.fetchall()
    assert [(c, e.strip(), h, d) for c, e, h, d in rows] == [
        (cid, "Clea.Ned@Example.org", 1, 1), (cid, "other@example.org", 0, 0),
        (twin, "clea.ned@example.org", 0, 0)]
    states = journal_states(config)
    assert list(states.values()) == ["done"]
    with Store(load_config(config).store_file) as store:
        detail = store.con.execute("SELECT detail FROM journal WHERE state = 'done'").fetchone()
    assert "put on hold" in detail[0]
