"""Issue 20 point 1: drift is checked right before each batch is sent, so a person changed at
either side while an apply runs — after its first batch went — is journaled stale and left
alone, never overwritten. The emulator is slowed, the batches made small, and people are
changed on both sides between two batches (from the emulator's members-page hook, which the
check before each batch runs into), against MariaDB and the emulator through the CLI."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from support.apply import cli_ok, group_status, journal_states, plan_and_freeze, posted
from support.values import TEST_LIST_ID

from civimc_audit.changes import apply as apply_module


def jan(day: int) -> datetime:
    return datetime(2026, 1, day, 12, tzinfo=UTC)


def email(name: str) -> str:
    return f"{name}@example.org"


@pytest.fixture
def people(civi_db, emulator, make_config, monkeypatch):
    """c1..c6 in the group, unsubscribed later at Mailchimp (R2: removals in CiviCRM); d1..d6
    removed from the group after subscribing at Mailchimp (R9: unsubscribes at Mailchimp).
    Batches of two, so each side is sent in three batches."""
    monkeypatch.setattr(apply_module, "MAILCHIMP_CHUNK", 2)
    monkeypatch.setattr(apply_module, "CIVICRM_CHUNK", 2)
    fx, ids = civi_db.fixture, {}
    for n in range(1, 7):
        for side in ("c", "d"):
            name = f"{side}{n}"
            ids[name] = cid = fx.contact(name.upper(), "Tester", email=email(name))
            fx.add_to_group(cid, civi_db.group_id, jan(1))
            if side == "c":
                emulator.add_member(TEST_LIST_ID, email(name), status="unsubscribed",
                                    last_changed=jan(5))
            else:
                fx.remove_from_group(cid, civi_db.group_id, jan(5))
                emulator.add_member(TEST_LIST_ID, email(name), status="subscribed",
                                    last_changed=jan(2))
    fx.commit()
    return make_config(), ids


def sent_batches(emulator) -> int:
    return sum(1 for r in emulator.requests
               if r.method == "POST" and r.path.rstrip("/") == f"/3.0/lists/{TEST_LIST_ID}")


def test_people_changed_between_batches_are_left_alone(people, run_cli, emulator, civi_db):
    config, ids = people
    plan_and_freeze(run_cli, config)
    changed_after = []

    def between_batches(emu, list_id, offset):
        """Once the first batch has reached Mailchimp: d3 changes at Mailchimp (a batch still
        to come), an admin adds d5 back to the group and touches c4 in CiviCRM, and c6 (whose
        removal from the CiviCRM group is still to come) re-subscribes at Mailchimp."""
        if changed_after or sent_batches(emu) == 0:
            return
        changed_after.append(sent_batches(emu))
        emu.update_member(list_id, email("d3"), merge_fields={"FNAME": "Changed"})
        emu.update_member(list_id, email("c6"), status="subscribed")
        now = datetime.now(UTC)
        civi_db.fixture.add_to_group(ids["d5"], civi_db.group_id, now)
        civi_db.fixture.add_to_group(ids["c4"], civi_db.group_id, now)
        civi_db.fixture.commit()

    emulator.faults.configure(rate_slow=1.0, slow_seconds=0.05)
    emulator.on_members_page = between_batches
    emulator.clear_requests()
    cli_ok(run_cli, config, "apply", "--execute", "--no-verify", code=1)
    emulator.on_members_page = None
    emulator.faults.reset()

    assert changed_after == [1]  # the people were changed after the first batch went
    states = journal_states(config)
    stale = {e for e, s in states.items() if s == "stale"}
    assert stale == {email("d3"), email("d5"), email("c4"), email("c6")}, states
    assert {s for e, s in states.items() if e not in stale} == {"done"}
    # Left alone: d3 and d5 still subscribed, c4 still in the group.
    sent = posted(emulator)
    assert (email("d3"), "unsubscribed") not in sent and (email("d5"), "unsubscribed") not in sent
    assert {emulator.get_member(TEST_LIST_ID, email(n))["status"] for n in ("d3", "d5")} == {
        "subscribed"}
    assert group_status(civi_db, ids["c4"]) == "Added"
    assert group_status(civi_db, ids["c6"]) == "Added"  # re-subscribed: not removed after all
    # The others were changed.
    assert emulator.get_member(TEST_LIST_ID, email("d4"))["status"] == "unsubscribed"
    assert group_status(civi_db, ids["c3"]) == "Removed"
    assert group_status(civi_db, ids["c5"]) == "Removed"
