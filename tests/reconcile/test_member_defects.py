"""Issue 20 point 3: a member record the rules cannot read safely (an unknown status, no or an
unreadable `last_changed`, no email, no id) is kept by the snapshot and held back as
`cannot_sync` with a reason code naming the defect — never a removal, an unsubscribe, an
addition or a crash — through the real path: MariaDB, the emulator sending the garbled records
over HTTP, the CLI's snapshot, reconcile, plan, approve, apply --execute, and the report."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from support.apply import cli_ok, group_status, journal_states, posted
from support.values import TEST_LIST_ID

from civimc_audit.common.codes import MEMBER_DEFECT_CODES, REASON_CODES
from civimc_audit.config import load_config
from civimc_audit.report.audit import REASON_HELP, AuditReport
from civimc_audit.report.words import REASON_WORDS
from civimc_audit.store import Store
from civimc_sandbox.emulator import GARBLED_ABSENT, member_hash


def jan(day: int) -> datetime:
    return datetime(2026, 1, day, 12, 0, 0, tzinfo=UTC)


# name: (CiviCRM history as (status, day), Mailchimp status, day, what the emulator sends
# instead, the reason code expected; the outcome the rules would give without the defect)
CASES = {
    "frob": ([("Added", 1)], "subscribed", 5, {"status": "frobnicated"},
             "unknown_member_status"),  # was remove_from_civicrm_group
    "nostatus": ([("Added", 1)], "subscribed", 5, {"status": GARBLED_ABSENT},
                 "unknown_member_status"),
    "nolc": ([("Added", 1), ("Removed", 3)], "subscribed", 2, {"last_changed": GARBLED_ABSENT},
             "no_member_change_date"),  # was unsubscribe_in_mailchimp
    "nulllc": ([("Added", 1), ("Removed", 3)], "subscribed", 2, {"last_changed": None},
               "no_member_change_date"),
    "badlc": ([("Added", 1), ("Removed", 3)], "subscribed", 2, {"last_changed": "yesterday"},
              "no_member_change_date"),
    "noid": ([("Added", 1)], "unsubscribed", 5, {"id": GARBLED_ABSENT},
             "no_member_id"),  # was remove_from_civicrm_group
    "nullemail": (None, "subscribed", 5, {"email_address": None},
                  "no_member_email"),  # was add_to_civicrm_group (a contact with no email)
}


@pytest.fixture
def garbled(civi_db, emulator, make_config):
    """Each case's contact and member, garbled as sent; plus `ok`, a removal that is sound."""
    fx, ids = civi_db.fixture, {}
    for name, (history, status, day, garble, _) in {
            **CASES, "ok": ([("Added", 1)], "unsubscribed", 5, {}, "")}.items():
        email = f"{name}@example.org"
        if history is not None:
            cid = fx.contact(name.title(), "Tester", email=email)
            ids[name] = cid
            for what, d in history:
                (fx.add_to_group if what == "Added" else fx.remove_from_group)(
                    cid, civi_db.group_id, jan(d))
        emulator.add_member(TEST_LIST_ID, email, status=status, last_changed=jan(day))
        if garble:
            emulator.garbled[member_hash(email)] = garble
    fx.commit()
    return make_config(), ids


def test_the_codes_are_known_and_worded():
    assert set(MEMBER_DEFECT_CODES) <= set(REASON_CODES)
    assert set(REASON_CODES) == set(REASON_WORDS) == set(REASON_HELP)


def test_garbled_members_are_kept_and_held_back_never_changed(garbled, run_cli, emulator,
                                                               civi_db):
    config, ids = garbled
    cli_ok(run_cli, config, "snapshot")
    settings = load_config(config)
    with Store(settings.store_file, read_only=True) as store:
        kept = store.con.execute(
            "SELECT count(*) FROM mailchimp_member WHERE snapshot_id = ("
            " SELECT max(id) FROM snapshots WHERE source = 'mailchimp')").fetchone()[0]
    assert kept == len(CASES) + 1  # every member, garbled or not, is in the snapshot

    cli_ok(run_cli, config, "reconcile")
    rows = json.loads(cli_ok(run_cli, config, "outcomes", "--format", "json"))
    by_name = {}
    for row in rows:
        name = (row["email"] or "").split("@")[0] or (
            "nullemail" if row["mailchimp_status"] == "subscribed" else "?")
        by_name[name] = row
    for name, (*_, code) in CASES.items():
        row = by_name[name]
        assert (row["outcome"], row["reason_code"]) == ("cannot_sync", code), (name, row)
        assert row["reason"].endswith(".") and "nothing can be done" in row["reason"], row
    assert by_name["frob"]["mailchimp_status"] == "frobnicated"
    with Store(settings.store_file, read_only=True) as store:
        assert store.con.execute("SELECT member_id FROM outcomes WHERE email = 'noid@example.org'"
                                 ).fetchall() == [(None,)]
    assert by_name["ok"]["outcome"] == "remove_from_civicrm_group"

    # The report counts them, each bucket with its words.
    report = AuditReport.load(config=settings)
    want = {}
    for *_, code in CASES.values():
        want[code] = want.get(code, 0) + 1
    assert report.summary()["reasons"] == want
    buckets = report.buckets().set_index("Bucket")
    for code, n in want.items():
        assert buckets.loc[code, "People"] == n and buckets.loc[code, "What it means and what to do"]

    # Everything approved and applied: only the sound removal is made; nothing crashes.
    cli_ok(run_cli, config, "plan")
    cli_ok(run_cli, config, "approve", "--all", "--reviewer", "Ada")
    cli_ok(run_cli, config, "approve", "--freeze", "--reviewer", "Ada")
    emulator.clear_requests()
    cli_ok(run_cli, config, "apply", "--execute")
    assert list(journal_states(config).values()) == ["done"]
    assert group_status(civi_db, ids["ok"]) == "Removed"
    for name in ("frob", "nostatus", "noid"):
        assert group_status(civi_db, ids[name]) == "Added", name
    for name in ("nolc", "nulllc", "badlc"):
        assert group_status(civi_db, ids[name]) == "Removed", name
    assert not posted(emulator)
    with civi_db.conn.cursor() as cur:
        civi_db.conn.commit()
        cur.execute("SELECT count(*) FROM civicrm_contact")
        assert cur.fetchone()[0] == len(ids)  # no contact created for the member without email
