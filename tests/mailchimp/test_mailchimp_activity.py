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


# --- many feeds: through /batches ---------------------------------------------------------------

def _feeds(mc) -> list[str]:
    """Members with every kind of feed, and two that do not exist (their reads fail: 404)."""
    kinds = [[ev("unsub", "2026-01-02T00:00:00Z"), ev("generic_signup", "2025-06-01T00:00:00Z")],
             [ev("open", "2026-01-09T00:00:00Z"), ev("website_signup", "2026-01-04T01:00:00+01:00")],
             [ev("click", "2026-01-01T00:00:00Z")],
             []]
    emails = [f"f{i}@example.org" for i in range(23)]
    for i, e in enumerate(emails):
        mc.emu.add_member(LIST, e, "unsubscribed" if i % 4 == 0 else "subscribed",
                          activity=kinds[i % 4] or None)
    ids = [member_hash(e) for e in emails]
    return ids[:5] + [member_hash("gone1@example.org")] + ids[5:] + [member_hash("gone2@x.org")]


def _traffic(mc) -> tuple[int, int]:
    feeds = sum(r.path.endswith("/activity-feed") for r in mc.emu.requests)
    batches = sum(r.method == "POST" and r.path == "/3.0/batches" for r in mc.emu.requests)
    return feeds, batches


def test_batched_feeds_give_the_evidence_direct_reads_give(mc):
    ids = _feeds(mc)
    direct = read_status_changes(mc.client(), LIST, ids)
    assert _traffic(mc) == (len(ids), 0)
    mc.emu.requests.clear()
    client = mc.client()
    batched = read_status_changes(client, LIST, ids, batch_threshold=len(ids) - 1, batch_chunk=10)
    assert _traffic(mc) == (0, 3)  # 25 feeds in batches of 10: no feed read directly
    assert batched == direct
    assert [e.member_id for e in batched] == ids
    states = {(e.state, e.status_event) for e in batched}
    assert states == {("read", "unsub"), ("read", "website_signup"), ("read", None),
                      ("unreadable", None)}
    gone = [e for e in batched if e.state == "unreadable"]
    assert [e.member_id for e in gone] == [ids[5], ids[-1]]
    assert all(e.status_changed is None and "404 Resource Not Found" in e.detail for e in gone)
    # 3 submits, polls until each finished, 3 archives: counted like any request
    polls = sum(r.method == "GET" and r.path.startswith("/3.0/batches/") for r in mc.emu.requests)
    assert client.stats["requests"] == 3 + polls + 3


def test_the_batch_threshold_is_honoured(mc):
    ids = _feeds(mc)
    read_status_changes(mc.client(), LIST, ids, batch_threshold=len(ids))
    assert _traffic(mc) == (len(ids), 0)
    mc.emu.requests.clear()
    read_status_changes(mc.client(), LIST, ids, batch_threshold=len(ids) - 1)
    assert _traffic(mc) == (0, 1)


def test_an_operation_refused_in_a_batch_is_unreadable_with_mailchimps_words(mc):
    mc.emu.add_member(LIST, "a@example.org", activity=[ev("unsub", "2026-01-02T00:00:00Z")])
    ok, bad = member_hash("a@example.org"), "not-a-member-id"
    direct = read_status_changes(mc.client(), LIST, [ok, bad])
    batched = read_status_changes(mc.client(), LIST, [ok, bad], batch_threshold=1)
    assert batched == direct
    assert batched[1].state == "unreadable" and batched[1].detail == (
        f"Mailchimp GET /lists/{LIST}/members/{bad}/activity-feed: 404 Resource Not Found — "
        "The requested resource could not be found.")


def test_a_batch_that_never_finishes_is_given_up_and_its_feeds_read_directly(mc, capsys):
    ids = _feeds(mc)
    mc.emu.batch_polls_to_finish = None
    mc.emu.batch_finish_after = None  # never finishes
    found = read_status_changes(mc.client(), LIST, ids, batch_threshold=1, batch_chunk=20,
                                batch_timeout=1.0)
    assert _traffic(mc) == (len(ids), 2)
    assert mc.emu.batches.all() == []  # given up: deleted
    assert found == read_status_changes(mc.client(), LIST, ids)
    assert "did not finish within 1 s" in capsys.readouterr().err
