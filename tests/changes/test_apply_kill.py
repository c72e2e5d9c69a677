"""Point 6 of issue 6: exactly once. `civimc-audit apply --execute` runs as a subprocess against
the emulator (which lives in the test process and survives) and MariaDB, and is SIGKILLed at
several points — including between a Mailchimp batch call and its journal write; applying
again finishes the plan with no change sent twice and none lost."""

from __future__ import annotations

import os
import signal
from collections import Counter

import pytest
from support.apply import (
    changed_at_mailchimp,
    cli_ok,
    journal_states,
    plan_and_freeze,
    start_apply,
)
from support.apply_population import load_every_rule
from support.values import TEST_LIST_ID


def plan_history_rows(civi_db) -> Counter:
    civi_db.conn.commit()
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT contact_id FROM civicrm_subscription_history WHERE group_id=%s AND"
                    " tracking = 'civimc-audit plan 1'", (civi_db.group_id,))
        return Counter(r[0] for r in cur.fetchall())


@pytest.fixture
def frozen(civi_db, emulator, make_config, run_cli):
    ids = load_every_rule(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID)
    config = make_config("lock_wait_seconds = 0")
    plan_and_freeze(run_cli, config, "--allow-pending")
    return config, ids


def check_exactly_once(config, emulator, civi_db, run_cli):
    """Apply again: everything done, each change made once, then a further apply sends nothing."""
    out = cli_ok(run_cli, config, "apply", "--execute")
    states = journal_states(config)
    assert set(states.values()) == {"done"}, states
    assert "applied items agree on both sides" in out
    mc_emails = {e for e in states if "@" in e}
    changed = changed_at_mailchimp(emulator)
    assert max(changed.values()) == 1, changed  # no change sent twice
    expected_mc = {"betty@bedrock.example.org", "fred@bedrock.example.org", "r7@example.org",
                   "r7a@example.org", "add0@example.org", "add1@example.org", "add2@example.org"}
    assert expected_mc <= set(changed) <= mc_emails  # none lost
    history = plan_history_rows(civi_db)
    assert history and max(history.values()) == 1, history
    assert len(history) == 5  # Barney, nohist (removed); Pebbles, dup (added); nova (new)
    civi_db.conn.commit()
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM civicrm_email WHERE email = 'nova@example.org'")
        assert cur.fetchone()[0] == 1
    before = (changed_at_mailchimp(emulator), plan_history_rows(civi_db))
    out = cli_ok(run_cli, config, "apply", "--execute", "--no-verify")
    assert "nothing to send" in out
    assert (changed_at_mailchimp(emulator), plan_history_rows(civi_db)) == before


@pytest.mark.parametrize("die_at", [
    "mailchimp_before_call:1",   # journaled sending, nothing sent
    "mailchimp_after_call:1",    # batch applied at Mailchimp, its journal write never made
    "mailchimp_after_call:2",    # the pending re-send of the compliance refusal, unjournaled
    "mailchimp_after_journal:1",
    "civicrm_before_call:1",
    "civicrm_after_call:1",      # removals committed in CiviCRM, not journaled
    "civicrm_after_call:2",      # additions committed, not journaled
    "civicrm_after_call:3",      # a new contact created and added, not journaled
])
def test_sigkill_then_apply_again_sends_each_change_exactly_once(frozen, emulator, civi_db,
                                                                  run_cli, die_at):
    config, _ = frozen
    proc = start_apply(config, die_at)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, (out, err)
    states = journal_states(config)
    assert "sending" in states.values()  # the kill left something in flight
    check_exactly_once(config, emulator, civi_db, run_cli)


def test_kill_from_outside_while_paused_and_a_second_apply_meanwhile_is_refused(
        frozen, emulator, civi_db, run_cli):
    config, _ = frozen
    proc = start_apply(config, "mailchimp_after_call:1:pause")
    try:
        line = proc.stdout.readline()
        assert line.startswith("paused at mailchimp_after_call"), (line, proc.stderr.read())
        code, _, err = run_cli("--config", config, "apply", "--execute")
        assert code == 2 and "`apply` (plan 1, run 1)" in err and "changed nothing" in err
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    check_exactly_once(config, emulator, civi_db, run_cli)


def test_a_dead_apply_is_killed_twice_and_still_finishes(frozen, emulator, civi_db, run_cli):
    config, _ = frozen
    for die_at in ("mailchimp_after_call:1", "civicrm_after_call:2"):
        proc = start_apply(config, die_at)
        proc.communicate(timeout=120)
        assert proc.returncode == -signal.SIGKILL
    check_exactly_once(config, emulator, civi_db, run_cli)
