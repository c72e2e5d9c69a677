"""The interest decision table (DESIGN "Interest groups", rules I1–I6) through the real path:
each case written into the MariaDB fixture (as CiviCRM core writes group changes) and into the
emulator, then the CLI snapshots, reconciles and prints `outcomes --interests`; every case's
interest rows are checked. Covers every rule, a tie and a decision by one second, a contact
created by R3, an interest mapped after members joined, a CiviCRM Pending status, an interest
missing from the audience, people left unsubscribed (no interest rows), and the server at UTC-8.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from datetime import datetime

import pytest
from reconcile.test_rules_time_and_group import (  # noqa: F401  (a fixture)
    naive_reading,
    pacific_server,
    write_history_as_civicrm,
)
from support.values import TEST_LIST_ID

from civimc_audit.common.codes import INTEREST_OUTCOME_ORDER

VOL, CAMP, GONE = "9f8e7d6c5b", "1a2b3c4d5e", "00000000aa"
JAN1 = "2025-01-01T00:00:00Z"


def _day(d: int, t: str = "12:00:00") -> str:
    return f"2025-01-{d:02d}T{t}Z"


def _world(db, emu):
    """The cases; returns (mapping, {email: {interest: expected (outcome, rule, reason_code)}})."""
    f, g = db.fixture, db.group_id
    vol = f.group("volunteers", "Volunteers")
    camp = f.group("campaigners", "Campaigners")
    gone = f.group("gone", "Gone")
    emu.add_interest_category(TEST_LIST_ID, "Topics", [(VOL, "Volunteering"),
                                                       (CAMP, "Campaigns")])
    expect: dict[str, dict] = {}

    def person(name, lc, interests, *, status="subscribed", contact=True, civi_in=True):
        email = f"{name}@example.org"
        cid = None
        if contact:
            cid = f.contact(name.title(), "Case", email=email)
            if civi_in:
                f.add_to_group(cid, g, JAN1)
        if lc is not None:
            emu.add_member(TEST_LIST_ID, email, status, last_changed=lc, interests=interests)
        return cid, email

    def want(email, vol_row, camp_row=("no_change", "I2", ""), gone_row=None):
        expect[email] = {VOL: vol_row, CAMP: camp_row,
                         GONE: gone_row or ("no_change", "I1", "no_interest_data")}

    # I1: not yet a member (R6 adds them), and a member with no entries (mapped since).
    cid, e = person("newcomer", None, None)
    f.add_to_group(cid, vol, _day(3))
    want(e, ("no_change", "I1", "no_interest_data"), ("no_change", "I1", "no_interest_data"))
    cid, e = person("unmapped", _day(5), {})
    f.add_to_group(cid, vol, _day(2))
    want(e, ("no_change", "I1", "no_interest_data"), ("no_change", "I1", "no_interest_data"))
    # I2: both sides agree.
    cid, e = person("agree", _day(5), {VOL: True, CAMP: False})
    f.add_to_group(cid, vol, _day(2))
    want(e, ("no_change", "I2", ""))
    # I3: Mailchimp later and in the interest; CiviCRM removed them earlier.
    cid, e = person("mcadds", _day(5), {VOL: True, CAMP: False})
    f.add_to_group(cid, vol, _day(1))
    f.remove_from_group(cid, vol, _day(2))
    want(e, ("add_to_civicrm_group", "I3", ""))
    # I4: Mailchimp later and not in it; CiviCRM added them earlier.
    cid, e = person("mcremoves", _day(5), {VOL: False, CAMP: False})
    f.add_to_group(cid, vol, _day(2))
    want(e, ("remove_from_civicrm_group", "I4", ""))
    # I4 with no history in the group: a group_contact row alone, so Mailchimp decides.
    cid, e = person("nohistory", _day(5), {VOL: False, CAMP: False})
    f.set_membership(cid, vol, "Added")
    want(e, ("remove_from_civicrm_group", "I4", ""))
    # I5: CiviCRM later and in the group.
    cid, e = person("civisets", _day(2), {VOL: False, CAMP: False})
    f.add_to_group(cid, vol, _day(5))
    want(e, ("set_interest_in_mailchimp", "I5", ""))
    # I6: CiviCRM later and removed them.
    cid, e = person("civiclears", _day(2), {VOL: True, CAMP: False})
    f.add_to_group(cid, vol, _day(1))
    f.remove_from_group(cid, vol, _day(5))
    want(e, ("clear_interest_in_mailchimp", "I6", ""))
    # A tie to the second goes to CiviCRM; one second either way decides.
    cid, e = person("tie", _day(5, "10:00:00"), {VOL: True, CAMP: False})
    f.remove_from_group(cid, vol, _day(5, "10:00:00"))
    want(e, ("clear_interest_in_mailchimp", "I6", ""))
    cid, e = person("civisecond", _day(5, "10:00:00"), {VOL: True, CAMP: False})
    f.remove_from_group(cid, vol, _day(5, "10:00:01"))
    want(e, ("clear_interest_in_mailchimp", "I6", ""))
    cid, e = person("mcsecond", _day(5, "10:00:01"), {VOL: True, CAMP: False})
    f.remove_from_group(cid, vol, _day(5, "10:00:00"))
    want(e, ("add_to_civicrm_group", "I3", ""))
    # CiviCRM Pending is not in the group: CiviCRM later ⇒ the interest is cleared.
    cid, e = person("pending", _day(2), {VOL: True, CAMP: False})
    f.pending(cid, vol, _day(5))
    want(e, ("clear_interest_in_mailchimp", "I6", ""))
    # A contact created by R3: no history in any group, so Mailchimp decides every interest.
    _, e = person("created", _day(5), {VOL: True, CAMP: False}, contact=False)
    want(e, ("add_to_civicrm_group", "I3", ""))
    # Left unsubscribed (R2, R9) or cannot_sync (R8): no interest rows at all.
    person("leaving", _day(5), {VOL: True}, status="unsubscribed")
    cid, _ = person("civileaves", _day(2), {VOL: True})
    f.remove_from_group(cid, g, _day(5))
    person("cleaned", _day(1, "00:00:00"), {VOL: True}, status="cleaned")
    f.commit()
    return {VOL: vol, CAMP: camp, GONE: gone}, expect


def _run(run_cli, config, *extra):
    for cmd in (["snapshot"], ["reconcile"]):
        code, _, err = run_cli("--config", config, *cmd)
        assert code == 0, err
    code, out, err = run_cli("--config", config, "outcomes", "--interests", "--format", "json",
                             *extra)
    assert code == 0, err
    return json.loads(out)


def _mapping(m):
    return "[interests]\n" + "\n".join(f'"{i}" = {g}' for i, g in m.items())


@pytest.fixture
def world(civi_db, emulator, make_config):
    mapping, expect = _world(civi_db, emulator)
    return mapping, expect, make_config(_mapping(mapping))


def test_every_interest_rule_case_by_case(world, run_cli):
    mapping, expect, config = world
    rows = _run(run_cli, config)
    got: dict[str, dict] = {}
    for r in rows:
        got.setdefault(r["email"], {})[r["interest_id"]] = (r["outcome"], r["rule"],
                                                            r["reason_code"])
        assert r["civicrm_group_id"] == mapping[r["interest_id"]]
        assert r["reason"].endswith(".") and r["reason"][0].isupper()
    wrong = {e: (got.get(e), want) for e, want in expect.items() if got.get(e) != want}
    assert not wrong, wrong
    assert set(got) == set(expect)  # nobody left unsubscribed or cannot_sync has rows


def test_reasons_name_the_interest_the_group_and_the_deciding_dates(world, run_cli):
    _, _, config = world
    rows = {(r["email"], r["interest_id"]): r for r in _run(run_cli, config)}
    adds = rows[("mcadds@example.org", VOL)]
    assert adds["reason"] == ("Mailchimp shows them in 'Volunteering' since 5 Jan 2025, after "
                              "CiviCRM removed them from the group 'Volunteers' on 2 Jan 2025: "
                              "added to the CiviCRM group 'Volunteers'.")
    assert (adds["mailchimp_interest"], adds["civicrm_status"], adds["winner"]) == \
        (True, "Removed", "mailchimp")
    assert adds["civicrm_changed"] == "2025-01-02T12:00:00Z"
    assert adds["interest_name"] == "Volunteering"
    tie = rows[("tie@example.org", VOL)]
    assert "the same second as Mailchimp's last change, and a tie goes to CiviCRM" in tie["reason"]
    assert tie["reason"].endswith("'Volunteering' cleared in Mailchimp.")
    created = rows[("created@example.org", VOL)]
    assert created["contact_id"] is None
    assert "no CiviCRM contact yet (one is created), so Mailchimp decides" in created["reason"]
    assert rows[("unmapped@example.org", VOL)]["mailchimp_interest"] is None
    assert "added or mapped after they joined" in rows[("unmapped@example.org", VOL)]["reason"]
    assert rows[("newcomer@example.org", VOL)]["reason"].startswith("Not yet in the Mailchimp")
    assert "has no interest 00000000aa" in rows[("agree@example.org", GONE)]["reason"]
    assert rows[("pending@example.org", VOL)]["civicrm_status"] == "Pending"


def test_tie_winner_mailchimp_flips_the_tie_only(world, run_cli):
    _, _, config = world
    config.write_text(config.read_text() + '\n[policy]\ntie_winner = "mailchimp"\n')
    rows = {(r["email"], r["interest_id"]): r for r in _run(run_cli, config)}
    assert rows[("tie@example.org", VOL)]["rule"] == "I3"
    assert "a tie goes to Mailchimp (policy tie_winner)" in rows[("tie@example.org", VOL)]["reason"]
    assert rows[("civisecond@example.org", VOL)]["rule"] == "I6"


def test_outcomes_interests_formats_and_filter(world, run_cli):
    _, expect, config = world
    _run(run_cli, config)
    code, out, err = run_cli("--config", config, "reconcile")
    assert code == 0, err
    lines = out.splitlines()
    at = lines.index("interest rows (civimc-audit outcomes --interests):")
    want = Counter(o for cases in expect.values() for o, _, _ in cases.values())
    assert {line.split()[0]: int(line.split()[1]) for line in lines[at + 1:]} == {
        o: want.get(o, 0) for o in INTEREST_OUTCOME_ORDER}
    code, out, err = run_cli("--config", config, "outcomes", "--interests", "--format", "csv",
                             "--outcome", "remove_from_civicrm_group")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == ["email", "contact_id", "interest_id", "interest_name",
                             "civicrm_group_id", "mailchimp_interest", "civicrm_status",
                             "civicrm_changed", "mailchimp_changed", "winner", "outcome", "rule",
                             "reason_code", "reason"]
    assert sorted(r["email"] for r in rows) == ["mcremoves@example.org", "nohistory@example.org"]
    assert {r["mailchimp_interest"] for r in rows} == {"false"}
    code, out, err = run_cli("--config", config, "outcomes", "--interests", "--json",
                             "--outcome", "set_interest_in_mailchimp")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["outcome"] == "set_interest_in_mailchimp" and doc["count"] == len(doc["rows"]) == 1
    assert doc["rows"][0]["email"] == "civisets@example.org"
    assert doc["rows"][0]["mailchimp_interest"] is False
    code, out, err = run_cli("--config", config, "outcomes", "--interests")
    assert code == 0, err
    assert "set_interest_in_mailchimp" in out and "mcadds@example.org" in out
    code, _, err = run_cli("--config", config, "outcomes", "--interests", "--outcome",
                           "add_to_mailchimp")
    assert code == 2 and "not an outcome of interest rows" in err


def test_history_at_utc_minus_8_decides_as_an_instant(pacific_server, emulator, make_config,  # noqa: F811
                                                      run_cli):
    db = pacific_server
    f, g, server = db.fixture, db.group_id, db.server
    vol = f.group("volunteers", "Volunteers")
    emulator.add_interest_category(TEST_LIST_ID, "Topics", [(VOL, "Volunteering")])
    late = f.contact("Late", "Evening", email="late@example.org")
    f.add_to_group(late, g, JAN1)
    f.commit()
    # Removed from Volunteers 15:30 Pacific = 23:30 UTC, after Mailchimp's 20:00 UTC change.
    write_history_as_civicrm(server, db.name, late, vol, "2026-03-01 09:00:00", "Added")
    write_history_as_civicrm(server, db.name, late, vol, "2026-03-01 15:30:00", "Removed")
    emulator.add_member(TEST_LIST_ID, "late@example.org", "subscribed",
                        last_changed="2026-03-01T20:00:00+00:00", interests={VOL: True})
    # The premise: read naively, CiviCRM's removal falls before Mailchimp's change (I3).
    assert naive_reading(server, db.name, late) == datetime(2026, 3, 1, 15, 30)
    rows = _run(run_cli, make_config(_mapping({VOL: vol})))
    assert len(rows) == 1
    row = rows[0]
    assert row["civicrm_changed"] == "2026-03-01T23:30:00Z"
    assert (row["winner"], row["rule"], row["outcome"]) == (
        "civicrm", "I6", "clear_interest_in_mailchimp")


def test_verify_reports_the_interest_changes_still_to_make(world, run_cli):
    _, expect, config = world
    code, out, err = run_cli("--config", config, "verify")
    assert code == 0, err
    want = Counter(o for cases in expect.values() for o, _, _ in cases.values())
    line = next(x for x in out.splitlines() if "interest rows still to change" in x)
    assert f"remove_from_civicrm_group {want['remove_from_civicrm_group']}" in line
    assert f"clear_interest_in_mailchimp {want['clear_interest_in_mailchimp']}" in line
    assert "plan items to review, approve and apply" in line
