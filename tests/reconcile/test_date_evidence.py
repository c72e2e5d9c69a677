"""Date evidence (docs/design.md "Date evidence: which change decided"), through the real path:
MariaDB fixture + the emulator over HTTP + the CLI, under both date_basis policies.

The people (dates in January 2026, UTC):
  removal  CiviCRM added 3 Jan; Mailchimp unsubscribed 2 Jan, name edited 5 Jan (last_changed)
  addition CiviCRM removed 3 Jan; Mailchimp subscribed 2 Jan, interest edited 5 Jan
  later    CiviCRM added 3 Jan; Mailchimp unsubscribed 4 Jan, edited 5 Jan: the status is later
  quiet    CiviCRM added 3 Jan; Mailchimp unsubscribed, last_changed 5 Jan, no subscription event
and rows that must cost no request: CiviCRM wins (civiwins), no CiviCRM history (nohistory),
agreement (agree), a member without a contact (stranger).
"""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime

import pytest
from support.spec import assert_traffic_matches_spec
from support.values import TEST_LIST_ID

from civimc_audit import AuditReport
from civimc_audit.changes.plan import items_frame
from civimc_audit.changes.review import filter_items
from civimc_audit.config import load_config
from civimc_audit.mailchimp.client import MailchimpClient, member_hash
from civimc_audit.runs.evidence import take_evidence
from civimc_audit.store import Store


def jan(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 1, day, hour, tzinfo=UTC)


def ev(kind: str, day: int) -> dict:
    return {"activity_type": kind, "created_at_timestamp": jan(day).isoformat()}


CONTESTED = ("removal@example.org", "addition@example.org", "later@example.org",
             "quiet@example.org")


@pytest.fixture
def people(civi_db, emulator):
    fx, gid = civi_db.fixture, civi_db.group_id
    for name in ("removal", "later", "quiet", "agree"):
        fx.add_to_group(fx.contact(name.title(), email=f"{name}@example.org"), gid, jan(3))
    addition = fx.contact("Addition", email="addition@example.org")
    fx.add_to_group(addition, gid, datetime(2025, 12, 1, tzinfo=UTC))
    fx.remove_from_group(addition, gid, jan(3))
    civiwins = fx.contact("Civiwins", email="civiwins@example.org")
    fx.add_to_group(civiwins, gid, datetime(2025, 12, 1, tzinfo=UTC))
    fx.remove_from_group(civiwins, gid, jan(6))
    fx.set_membership(fx.contact("Nohistory", email="nohistory@example.org"), gid, "Added")
    fx.commit()
    add = emulator.add_member
    add(TEST_LIST_ID, "removal@example.org", "unsubscribed", last_changed=jan(5),
        activity=[ev("generic_signup", 1), ev("unsub", 2), ev("open", 4)])
    add(TEST_LIST_ID, "addition@example.org", "subscribed", last_changed=jan(5),
        activity=[ev("unsub", 1), ev("website_signup", 2), ev("click", 4)])
    add(TEST_LIST_ID, "later@example.org", "unsubscribed", last_changed=jan(5),
        activity=[ev("unsub", 4)])
    add(TEST_LIST_ID, "quiet@example.org", "unsubscribed", last_changed=jan(5),
        activity=[ev("open", 4)])
    add(TEST_LIST_ID, "civiwins@example.org", "subscribed", last_changed=jan(5),
        activity=[ev("generic_signup", 1)])
    add(TEST_LIST_ID, "nohistory@example.org", "unsubscribed", last_changed=jan(5),
        activity=[ev("unsub", 2)])
    add(TEST_LIST_ID, "agree@example.org", "subscribed", last_changed=jan(5))
    add(TEST_LIST_ID, "stranger@example.org", "subscribed", last_changed=jan(5),
        activity=[ev("generic_signup", 2)])
    return civi_db


def feed_requests(emulator) -> list[str]:
    return [r.path.split("/")[-2] for r in emulator.requests if r.path.endswith("/activity-feed")]


def outcomes(run_cli, config) -> dict:
    code, out, err = run_cli("--config", config, "outcomes", "--format", "json")
    assert code == 0, err
    return {r["email"]: r for r in json.loads(out)}


def snapshot_and_reconcile(run_cli, config) -> str:
    code, out, err = run_cli("--config", config, "snapshot")
    assert code == 0, err
    code, _, err = run_cli("--config", config, "reconcile")
    assert code == 0, err
    return out


def test_last_changed_decides_and_profile_edits_are_flagged(people, emulator, make_config,
                                                            run_cli):
    config = make_config()
    out = snapshot_and_reconcile(run_cli, config)
    assert "date evidence: read 4 activity feed(s) in 4 request(s)" in out
    # The request budget: one feed per contested row, none for anyone else.
    assert sorted(feed_requests(emulator)) == sorted(member_hash(e) for e in CONTESTED)
    rows = outcomes(run_cli, config)

    removal = rows["removal@example.org"]
    assert (removal["rule"], removal["outcome"]) == ("R2", "remove_from_civicrm_group")
    assert removal["mailchimp_status_changed"] == "2026-01-02T12:00:00Z"
    assert "profile_edit_decided" in removal["flags"].split()
    assert removal["reason"].startswith(
        "Mailchimp's last change on 5 Jan 2026 was not a change of status: they unsubscribed "
        "on 2 Jan 2026, before CiviCRM added them on 3 Jan 2026, yet Mailchimp's later last "
        "change decides, as in the sync: remove from the CiviCRM group")

    addition = rows["addition@example.org"]
    assert (addition["rule"], addition["outcome"]) == ("R3", "add_to_civicrm_group")
    assert addition["mailchimp_status_changed"] == "2026-01-02T12:00:00Z"
    assert "profile_edit_decided" in addition["flags"].split()
    assert "they subscribed on 2 Jan 2026, before CiviCRM removed them on 3 Jan 2026" \
        in addition["reason"]

    later = rows["later@example.org"]
    assert (later["rule"], later["mailchimp_status_changed"]) == ("R2", "2026-01-04T12:00:00Z")
    assert "profile_edit_decided" not in later["flags"]

    quiet = rows["quiet@example.org"]
    assert (quiet["rule"], quiet["mailchimp_status_changed"], quiet["flags"]) == ("R2", "", "")

    for email in ("civiwins@example.org", "nohistory@example.org", "agree@example.org",
                  "stranger@example.org"):
        assert rows[email]["mailchimp_status_changed"] == ""
        assert "profile_edit_decided" not in rows[email]["flags"]
    assert rows["civiwins@example.org"]["rule"] == "R9"
    assert rows["nohistory@example.org"]["rule"] == "R2"

    with Store(load_config(config).store_file, read_only=True) as store:
        mc = store.latest_snapshot("mailchimp")
        assert (mc.meta["feed_members"], mc.meta["feed_requests"], mc.meta["feed_unreadable"]) \
            == (4, 4, 0)
    assert_traffic_matches_spec(emulator)

    # The report: "how it decided" counts them and lists them; each flag is a review bucket.
    report = AuditReport.load(str(config))
    words = report.date_evidence()
    assert "activity feed was read for 4 people" in words and "(4 requests)" in words
    assert "A profile edit decided 2 people" in words
    table = report.date_evidence_table()
    assert "removal@example.org" in table and "addition@example.org" in table
    assert "later@example.org" not in table and "2026-01-02 12:00:00" in table
    buckets = report.buckets().set_index("Bucket")
    assert buckets.loc["profile_edit_decided", "People"] == 2
    assert "date_basis" in buckets.loc["profile_edit_decided", "What it means and what to do"]
    assert "date_basis = last_changed" in report.policy_text()

    # Review: the plan's CSV carries the flag, the filters and `approve --flag` find them.
    code, out, err = run_cli("--config", config, "plan")
    assert code == 0, err
    export = config.parent / "review.csv"
    assert run_cli("--config", config, "review", "--export", export)[0] == 0
    with export.open(encoding="utf-8", newline="") as fh:
        flagged = {r["email"] for r in csv.DictReader(fh)
                   if "profile_edit_decided" in r["flags"].split()}
    assert flagged == {"removal@example.org", "addition@example.org"}
    code, out, err = run_cli("--config", config, "approve", "--flag", "profile_edit_decided",
                             "--reject", "--reviewer", "tester")
    assert code == 0, err
    with Store(load_config(config).store_file, read_only=True) as store:
        items = items_frame(store, store.con.execute("SELECT max(id) FROM plans").fetchone()[0])
    picked = filter_items(items, flag="profile_edit_decided")
    assert set(picked["email"]) == flagged and set(picked["decision"]) == {"rejected"}


def test_status_change_decides_the_profile_edit_rows_by_the_status_date(people, emulator,
                                                                       make_config, run_cli):
    config = make_config('\n[policy]\ndate_basis = "status_change"\n')
    snapshot_and_reconcile(run_cli, config)
    rows = outcomes(run_cli, config)
    removal = rows["removal@example.org"]
    assert (removal["winner"], removal["rule"], removal["outcome"]) == \
        ("civicrm", "R7", "resubscribe_in_mailchimp")
    assert {"needs_confirmation", "profile_edit_decided"} <= set(removal["flags"].split())
    assert "so CiviCRM decides (policy date_basis = \"status_change\")" in removal["reason"]
    addition = rows["addition@example.org"]
    assert (addition["winner"], addition["rule"], addition["outcome"]) == \
        ("civicrm", "R9", "unsubscribe_in_mailchimp")
    # The status changed after CiviCRM (later) or nobody knows when (quiet): unchanged.
    assert (rows["later@example.org"]["rule"], rows["quiet@example.org"]["rule"]) == ("R2", "R2")
    assert sorted(feed_requests(emulator)) == sorted(member_hash(e) for e in CONTESTED)
    report = AuditReport.load(str(config))
    assert "date_basis = status_change" in report.policy_text()
    assert "which changes 2 of them (CiviCRM decides)" in report.date_evidence()


def test_a_feed_unreadable_after_retries_is_flagged_never_an_empty_date(people, emulator,
                                                                        make_config, run_cli):
    config_path = make_config()
    for side in ("--civicrm-only", "--mailchimp-only"):  # separately: no evidence gathered
        assert run_cli("--config", config_path, "snapshot", side)[0] == 0
    assert feed_requests(emulator) == []
    assert run_cli("--config", config_path, "reconcile")[0] == 0
    rows = outcomes(run_cli, config_path)
    removal = rows["removal@example.org"]
    assert removal["flags"] == "status_change_unknown" and removal["mailchimp_status_changed"] == ""
    assert "was not read for these snapshots" in removal["reason"]

    config = load_config(config_path)
    hashes = {member_hash(e) for e in CONTESTED}
    removal_hash = member_hash("removal@example.org")
    emulator.faults.match = lambda method, path: path.endswith(f"{removal_hash}/activity-feed")
    emulator.faults.configure(rate_5xx=1.0)
    emulator.faults.queue("drop")  # a transient failure first: retried
    with Store(config.store_file) as store:
        civi, mc = store.latest_snapshot("civicrm"), store.latest_snapshot("mailchimp")
        client = MailchimpClient(config.mailchimp, retries=2, backoff=0.01, on_retry=None)
        with client:
            found = take_evidence(config, store, civi.id, mc.id, client=client)
        assert (found.members, found.unreadable, found.requests) == (4, 1, 3 + 3)
        assert store.snapshot(mc.id).meta["feed_unreadable"] == 1
    assert set(feed_requests(emulator)) == hashes
    emulator.faults.reset()
    assert run_cli("--config", config_path, "reconcile")[0] == 0
    rows = outcomes(run_cli, config_path)
    removal = rows["removal@example.org"]
    assert removal["flags"] == "status_change_unknown" and removal["mailchimp_status_changed"] == ""
    assert "Mailchimp's activity feed could not be read" in removal["reason"]
    assert (removal["rule"], removal["outcome"]) == ("R2", "remove_from_civicrm_group")
    assert "profile_edit_decided" in rows["addition@example.org"]["flags"]
    words = AuditReport.load(str(config_path)).date_evidence()
    assert "For 1 person whose later Mailchimp date decides, nobody knows" in words
    assert "1 feed(s) could not be read after retries" in words


def test_an_incremental_snapshot_reads_only_the_changed_members_feeds(people, emulator,
                                                                      make_config, run_cli):
    config = make_config()
    snapshot_and_reconcile(run_cli, config)
    before = outcomes(run_cli, config)
    emulator.clear_requests()
    emulator.update_member(TEST_LIST_ID, "later@example.org", merge_fields={"FNAME": "L"})
    code, out, err = run_cli("--config", config, "snapshot", "--incremental")
    assert code == 0, err
    assert "date evidence: read 1 activity feed(s) in 1 request(s)" in out
    assert feed_requests(emulator) == [member_hash("later@example.org")]
    assert run_cli("--config", config, "reconcile")[0] == 0
    after = outcomes(run_cli, config)
    for email in CONTESTED:  # the evidence reused says what the feeds said
        assert after[email]["mailchimp_status_changed"] == before[email]["mailchimp_status_changed"]
        assert after[email]["flags"] == before[email]["flags"]
    with Store(load_config(config).store_file) as store:
        assert store.latest_snapshot("mailchimp").meta["feed_reused"] == 3
