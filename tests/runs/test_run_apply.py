"""`civimc-audit run --apply` with standing approvals (issue 7 point 5), end to end on the seed's
five people: a real MariaDB, the Mailchimp emulator over HTTP, papermill executing the report.

Seed: Betty (in the group, not at Mailchimp) is added to Mailchimp, Pebbles (subscribed at
Mailchimp, not in the group) is added to the group, Barney (unsubscribed later at Mailchimp) is
removed from the group and Fred (removed later in CiviCRM) is unsubscribed at Mailchimp.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pytest
from support.apply_population import add_fake_address
from support.values import TEST_API_KEY, TEST_LIST_ID

from civimc_sandbox.demo import load_seed, seed_email

YEAR = datetime.now(UTC).year - 1
ADDS = 'auto_approve = ["add_to_mailchimp", "add_to_civicrm_group"]'
REMOVALS = {"remove_from_civicrm_group": 1, "unsubscribe_in_mailchimp": 1}
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@pytest.fixture
def seeded(civi_db, emulator, make_config):
    ids = load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)

    def config(schedule: str = ""):
        return make_config(f"\n[schedule]\n{schedule}\n")

    config.ids = ids
    return config


def runs_of(config):
    return sorted(p for p in (config.parent / "runs").iterdir()
                  if p.is_dir() and p.name[0].isdigit())


def summary_of(folder):
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))


def query(config, sql, params=()):
    with duckdb.connect(str(config.parent / "audit.duckdb"), read_only=True) as con:
        return con.execute(sql, list(params)).fetchall()


def mc_status(emulator, name):
    member = emulator.get_member(TEST_LIST_ID, seed_email(name))
    return member and member["status"]


def group_state(civi_db, contact_id):
    """(group_contact status, number of history rows) of a contact in the test group."""
    civi_db.conn.commit()
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT status FROM civicrm_group_contact WHERE contact_id=%s AND group_id=%s",
                    (contact_id, civi_db.group_id))
        row = cur.fetchone()
        cur.execute("SELECT count(*) FROM civicrm_subscription_history WHERE contact_id=%s"
                    " AND group_id=%s", (contact_id, civi_db.group_id))
        return (row and row[0], cur.fetchone()[0])


def mailchimp_writes(emulator):
    return [r for r in emulator.requests if r.method in WRITES]


def test_standing_approvals_apply_the_adds_and_leave_removals_for_a_person(
        seeded, civi_db, emulator, run_cli):
    config = seeded(ADDS)
    ids = seeded.ids
    barney_before = group_state(civi_db, ids["Barney"])
    code, out, err = run_cli("--config", config, "run", "--apply")
    assert code == 0, err

    # Betty subscribed at Mailchimp, Pebbles added to the group; Barney and Fred untouched.
    assert mc_status(emulator, "Betty") == "subscribed"
    assert group_state(civi_db, ids["Pebbles"]) == ("Added", 1)
    assert group_state(civi_db, ids["Barney"]) == barney_before == ("Added", 1)
    assert mc_status(emulator, "Fred") == "subscribed"

    (first,) = runs_of(config)
    s = summary_of(first)
    assert s["status"] == "ok" and s["exit_code"] == 0 and s["steps"]["apply"] == "ok"
    assert s["durations"]["apply"] >= 0
    (plan_hash,) = query(config, "SELECT frozen_hash FROM plans WHERE id = 1")[0]
    assert s["plan"] == {"id": 1, "hash": plan_hash, "status": "frozen", "approved": 2}
    assert len(plan_hash) == 64
    assert s["applied"] == {"subscribe": {"done": 1, "failed": 0, "stale": 0},
                            "add_to_group": {"done": 1, "failed": 0, "stale": 0}}
    assert s["waiting_for_review"] == REMOVALS
    assert s["verify"]["applied_items_still_needing_a_change"] == 0
    assert s["apply_folder"].startswith("apply-plan1-")
    assert s["message"].endswith("; applied 2 of 2 auto-approved items; 2 wait for review")
    # Who approved what: the standing approval, for the two adds only.
    decisions = query(config, "SELECT i.outcome, d.reviewer, d.via FROM decisions d JOIN"
                              " plan_items i USING (plan_id, item_id) ORDER BY i.outcome")
    assert decisions == [("add_to_civicrm_group", "standing approval (config)", "standing"),
                         ("add_to_mailchimp", "standing approval (config)", "standing")]
    # The words, on stdout and in the executed report.
    assert "Applied plan 1 (standing approval of 2 items" in out
    assert ("2 items wait for a person (1 remove_from_civicrm_group, 1 unsubscribe_in_mailchimp)"
            in out)
    html = (first / "audit.html").read_text(encoding="utf-8")
    assert "Standing approvals: applied, and waiting for a person" in html
    assert "add_to_group: 1 done; subscribe: 1 done" in html
    assert "2 items wait for a person" in html
    assert "every applied person agrees on both sides" in html
    secret = TEST_API_KEY.split("-")[0]
    for text in (out, err, html, (first / "summary.json").read_text()):
        assert secret not in text

    # A second run finds the adds done: nothing left for Betty and Pebbles, nothing re-sent.
    emulator.clear_requests()
    code, out, err = run_cli("--config", config, "run", "--apply")
    assert code == 0, err
    second = runs_of(config)[-1]
    s2 = summary_of(second)
    assert s2["outcomes"]["add_to_mailchimp"] == s2["outcomes"]["add_to_civicrm_group"] == 0
    assert s2["outcomes"]["no_change"] == 3
    assert s2["plan"]["id"] == 2 and s2["plan"]["approved"] == 0
    assert s2["plan"]["status"] == "open" and s2["plan"]["hash"] is None
    assert s2["applied"] == {} and s2["waiting_for_review"] == REMOVALS
    assert "nothing auto-approvable, nothing applied" in s2["message"]
    assert "nothing was auto-approvable" in out
    assert "plan 2 is open: review it" in out
    assert mailchimp_writes(emulator) == []
    assert group_state(civi_db, ids["Pebbles"]) == ("Added", 1)
    assert query(config, "SELECT count(*) FROM journal WHERE plan_id = 2") == [(0,)]
    assert "Nothing was applied" in (second / "audit.html").read_text(encoding="utf-8")
    # The index links each run's apply folder; pruning leaves it (it is young).
    index = (config.parent / "runs" / "index.html").read_text(encoding="utf-8")
    assert f'href="{s["apply_folder"]}/journal.csv"' in index


@pytest.mark.parametrize("listed, sent", [
    (["unsubscribe_in_mailchimp"], {"Fred"}),
    (["remove_from_civicrm_group", "add_to_mailchimp"], {"Barney", "Betty"}),
])
def test_a_removal_is_applied_only_when_its_own_code_is_listed(seeded, civi_db, emulator,
                                                               run_cli, listed, sent):
    config = seeded(f"auto_approve = {json.dumps(listed)}")
    ids = seeded.ids
    code, _, err = run_cli("--config", config, "run", "--apply")
    assert code == 0, err
    assert (mc_status(emulator, "Fred") == "unsubscribed") == ("Fred" in sent)
    assert (mc_status(emulator, "Betty") == "subscribed") == ("Betty" in sent)
    assert (group_state(civi_db, ids["Barney"])[0] == "Removed") == ("Barney" in sent)
    assert group_state(civi_db, ids["Pebbles"])[0] is None  # never listed
    s = summary_of(runs_of(config)[0])
    all_outcomes = {"add_to_mailchimp", "add_to_civicrm_group", *REMOVALS}
    assert set(s["waiting_for_review"]) == all_outcomes - set(listed)
    assert s["plan"]["approved"] == len(listed)


def test_a_crossed_threshold_stops_the_apply(seeded, civi_db, emulator, run_cli):
    config = seeded(f"{ADDS}\nmax_removals = 1")
    code, _, err = run_cli("--config", config, "run", "--apply")
    assert code == 1
    assert err.strip() == ("civimc-audit: threshold crossed: 2 removals > max_removals 1; "
                           "nothing applied")
    assert mailchimp_writes(emulator) == []
    assert mc_status(emulator, "Betty") is None
    assert group_state(civi_db, seeded.ids["Pebbles"]) == (None, 0)
    s = summary_of(runs_of(config)[0])
    assert s["status"] == "threshold" and s["exit_code"] == 1
    assert s["steps"]["apply"] == "skipped (threshold crossed: nothing applied)"
    assert s["plan"] is None and s["applied"] is None
    assert query(config, "SELECT count(*) FROM plans") == [(0,)]
    html = (runs_of(config)[0] / "audit.html").read_text(encoding="utf-8")
    assert "Nothing was applied: the apply step was skipped (threshold crossed" in html


def test_run_without_apply_writes_nothing_even_with_standing_approvals(seeded, civi_db,
                                                                       emulator, run_cli):
    config = seeded('auto_approve = ["add_to_mailchimp", "add_to_civicrm_group", '
                    '"remove_from_civicrm_group", "unsubscribe_in_mailchimp"]')
    before = {name: group_state(civi_db, cid) for name, cid in seeded.ids.items()}
    code, _, err = run_cli("--config", config, "run")
    assert code == 0, err
    assert mailchimp_writes(emulator) == []
    assert {name: group_state(civi_db, cid) for name, cid in seeded.ids.items()} == before
    s = summary_of(runs_of(config)[0])
    assert s["steps"]["apply"] == "skipped (no --apply)" and s["applied"] is None
    assert query(config, "SELECT count(*) FROM plans") == [(0,)]
    assert not list((config.parent / "runs").glob("apply-plan*"))


def test_apply_without_standing_approvals_is_a_configuration_error(seeded, run_cli):
    config = seeded()
    code, _, err = run_cli("--config", config, "run", "--apply")
    assert code == 2
    assert err.startswith("civimc-audit: `run --apply` applies only what [schedule] "
                          "auto_approve lists, and it lists nothing")
    assert not (config.parent / "runs").exists() or runs_of(config) == []


def test_a_failed_item_makes_the_run_need_a_person(seeded, civi_db, emulator, run_cli):
    """Mailchimp refuses a fake address: the rest is applied, the run exits 1 and says so."""
    fay = add_fake_address(civi_db.fixture, civi_db.group_id)
    config = seeded('auto_approve = ["add_to_mailchimp"]')
    code, _, err = run_cli("--config", config, "run", "--apply")
    assert code == 1
    assert "applied 1 of 2 auto-approved items" in err
    assert "1 applied items failed or went stale" in err
    assert mc_status(emulator, "Betty") == "subscribed"
    assert fay
    s = summary_of(runs_of(config)[0])
    assert s["status"] == "needs_person" and s["exit_code"] == 1
    assert s["applied"] == {"subscribe": {"done": 1, "failed": 1, "stale": 0}}
    html = (runs_of(config)[0] / "audit.html").read_text(encoding="utf-8")
    assert "1 items failed: see the journal in the apply folder apply-plan1-" in html
    index = (config.parent / "runs" / "index.html").read_text(encoding="utf-8")
    assert ">needs_person<" in index


def test_old_apply_folders_are_pruned_like_runs(seeded, run_cli):
    config = seeded(f"{ADDS}\nkeep_runs_days = 30")
    assert run_cli("--config", config, "run", "--apply")[0] == 0
    runs = config.parent / "runs"
    (young,) = runs.glob("apply-plan1-*")
    old = young.rename(runs / "apply-plan1-20200101T000000Z")
    code, _, err = run_cli("--config", config, "run", "--apply")
    assert code == 0, err
    s = summary_of(runs_of(config)[-1])
    assert s["pruned"]["apply_folders"] == [old.name]
    assert not old.exists()
    assert s["pruned"]["runs"] == []  # both runs are young
    assert len(runs_of(config)) == 2


def test_mailchimp_failing_during_the_apply_exits_3_and_the_journal_says_how_far(
        seeded, civi_db, emulator, run_cli):
    config = seeded(ADDS)
    config.write_text(config.read_text().replace("[mailchimp]", "[mailchimp]\nretries = 1"))
    emulator.faults.match = lambda method, path: method == "POST"
    emulator.faults.queue("drop", 2)  # the batch call and its one retry never arrive
    code, _, err = run_cli("--config", config, "run", "--apply")
    assert code == 3
    *waits, reason = err.strip().splitlines()  # the client's one retry, then the reason
    assert len(waits) == 1 and waits[0].startswith("civimc-audit: Mailchimp unreachable "
                                                   "(connection dropped), retry 1 of 1 in ")
    assert reason.startswith("civimc-audit: apply failed: apply stopped:")
    s = summary_of(runs_of(config)[0])
    assert s["status"] == "failed" and s["failed_step"] == "apply"
    assert s["steps"]["apply"] == "failed" and s["steps"]["report"] == "ok"
    assert s["plan"]["id"] == 1 and s["plan"]["approved"] == 2
    assert s["applied"]["subscribe"] == {"done": 0, "failed": 0, "stale": 0, "not_finished": 1}
    assert s["waiting_for_review"] == REMOVALS
    assert mc_status(emulator, "Betty") is None
    html = (runs_of(config)[0] / "audit.html").read_text(encoding="utf-8")
    assert "subscribe: 1 not finished" in html


def test_flagged_items_wait_for_a_person_whatever_the_standing_approval(seeded, civi_db,
                                                                         emulator, run_cli):
    """Betty's twin who asked not to be emailed is in the group but not at Mailchimp: the
    outcome is add_to_mailchimp (as the sync would do), flagged consent_conflict — a standing
    approval of add_to_mailchimp must not send it."""
    f = civi_db.fixture
    quiet = f.contact("Quiet", "Rubble", do_not_email=True, email="quiet@bedrock.example.org")
    f.add_to_group(quiet, civi_db.group_id, datetime(YEAR, 1, 4, 10, tzinfo=UTC))
    f.commit()
    config = seeded(ADDS)
    code, out, err = run_cli("--config", config, "run", "--apply")
    assert code == 0, err
    assert mc_status(emulator, "Betty") == "subscribed"
    assert emulator.get_member(TEST_LIST_ID, "quiet@bedrock.example.org") is None
    summary = summary_of(runs_of(config)[-1])
    assert summary["waiting_for_review"].get("add_to_mailchimp") == 1
