"""Reading the activity feeds for date evidence (mailchimp/activity.py) against the emulator over
HTTP: the latest subscription event, max_connections at once, retries, unreadable feeds."""

from __future__ import annotations

import pytest
from support.mc_env import LIST, mc_env

from civimc_audit.errors import MailchimpError
from civimc_audit.mailchimp.activity import latest_status_change, read_status_changes
from civimc_audit.mailchimp.client import member_hash


@pytest.fixture
def mc(tmp_path, monkeypatch):
    yield from mc_env(tmp_path, monkeypatch)


def ev(kind: str, when: str) -> dict:
    return {"activity_type": kind, "created_at_timestamp": when}


def test_the_latest_subscription_event_wins_whatever_the_order():
    when, kind = latest_status_change([ev("open", "2026-01-09T00:00:00Z"),
                                       ev("unsub", "2026-01-02T00:00:00+00:00"),
                                       ev("website_signup", "2026-01-04T01:00:00+01:00")])
    assert (when.isoformat(), kind) == ("2026-01-04T00:00:00", "website_signup")
    assert latest_status_change([ev("click", "2026-01-01T00:00:00Z")]) == (None, None)


def test_feeds_are_read_at_most_max_connections_at_once(mc):
    emails = [f"p{i}@example.org" for i in range(24)]
    for e in emails:
        mc.emu.add_member(LIST, e, "unsubscribed", last_changed="2026-01-05T00:00:00Z",
                          activity=[ev("unsub", "2026-01-02T00:00:00Z")])
    mc.emu.faults.configure(rate_slow=1.0, slow_seconds=0.05)
    mc.emu.peak_inflight = 0
    client = mc.client(max_connections=3)
    found = read_status_changes(client, LIST, [member_hash(e) for e in emails])
    assert 1 < mc.emu.peak_inflight <= 3
    assert [f.member_id for f in found] == [member_hash(e) for e in emails]
    assert {(f.state, f.status_changed.isoformat(), f.status_event) for f in found} == \
        {("read", "2026-01-02T00:00:00", "unsub")}
    assert client.stats["requests"] == 24


def test_transient_failures_are_retried_and_a_lasting_one_is_unreadable(mc):
    for e in ("a@example.org", "b@example.org"):
        mc.emu.add_member(LIST, e, activity=[ev("generic_signup", "2026-01-02T00:00:00Z")])
    mc.emu.faults.queue("429")
    client = mc.client(retries=2)
    a, = read_status_changes(client, LIST, [member_hash("a@example.org")])
    assert a.state == "read" and client.stats["retries"] == 1
    gone, = read_status_changes(client, LIST, [member_hash("gone@example.org")])
    assert gone.state == "unreadable" and gone.status_changed is None
    assert "404" in gone.detail
    mc.emu.faults.configure(rate_5xx=1.0)
    b, = read_status_changes(client, LIST, [member_hash("b@example.org")])
    assert b.state == "unreadable" and "gave up after 3 attempts" in b.detail
    mc.emu.faults.reset()


def test_a_refused_key_is_raised_not_flagged(mc):
    mc.emu.add_member(LIST, "a@example.org")
    mc.emu.api_key = "ffffffffffffffffffffffffffffffff-us7"
    with pytest.raises(MailchimpError, match="refused the API key"):
        read_status_changes(mc.client(), LIST, [member_hash("a@example.org")])
