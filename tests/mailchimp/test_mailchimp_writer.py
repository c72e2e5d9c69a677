"""MailchimpWriter against the emulator over HTTP: batches of ≤500, every per-member error
mapped back to its member, compliance handling, PUT upsert, PATCH email change, drift check."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
from support.mc_env import LIST, OLD, mc_env

from civimc_audit.mailchimp.client import member_hash
from civimc_audit.mailchimp.writer import MailchimpWriter, MemberResult


@pytest.fixture
def mc(tmp_path, monkeypatch):
    yield from mc_env(tmp_path, monkeypatch)


@pytest.fixture
def writer(mc):
    return MailchimpWriter(mc.client(), LIST)


def batch_calls(mc):
    return [r for r in mc.emu.requests if r.method == "POST" and r.path == f"/3.0/lists/{LIST}"]


def test_batches_hold_at_most_500_members_and_every_member_gets_a_result(mc, writer):
    for i in range(0, 1234, 3):
        mc.emu.add_member(LIST, f"w{i}@example.org", status="unsubscribed", last_changed=OLD)
    members = [{"email_address": f"w{i}@example.org", "status": "subscribed" if i % 2 else
                "unsubscribed", "merge_fields": {"FNAME": f"W{i}"}} for i in range(1234)]
    # the already-unsubscribed ones asked to subscribe are refused; set them aside
    members = [m for i, m in enumerate(members) if not (i % 3 == 0 and i % 2)]
    results = writer.batch_update(members)
    calls = batch_calls(mc)
    assert len(calls) == math.ceil(len(members) / 500)
    assert all(len(c.body["members"]) <= 500 and c.body["update_existing"] is True
               for c in calls)
    assert [r.email_address for r in results] == [m["email_address"] for m in members]
    assert all(isinstance(r, MemberResult) and r.ok for r in results)
    for m, r in zip(members, results, strict=True):
        assert r.status == m["status"] == mc.emu.get_member(LIST, m["email_address"])["status"]
        assert r.member_id == member_hash(m["email_address"])


def test_every_error_item_is_mapped_to_its_member_with_the_right_title(mc, writer):
    e = mc.emu
    e.add_member(LIST, "unsub@example.org", status="unsubscribed")
    e.add_member(LIST, "bounced@example.org", status="cleaned")
    e.add_member(LIST, "gone@example.org", status="subscribed")
    e.delete_member(LIST, "gone@example.org", permanent=True)
    members = [
        {"email_address": "ok@example.org", "status": "subscribed"},
        {"email_address": "Unsub@Example.org", "status": "subscribed"},
        {"email_address": "bounced@example.org", "status": "subscribed"},
        {"email_address": "gone@example.org", "status": "subscribed"},
        {"email_address": "someone@example.invalid", "status": "subscribed"},
        {"email_address": "not an address", "status": "subscribed"},
        {"email_address": "unsub2@example.org", "status": "unsubscribed"},
    ]
    got = {r.email_address: r for r in writer.batch_update(members)}
    assert got["ok@example.org"].ok and got["unsub2@example.org"].ok
    expect = {"Unsub@Example.org": "Member In Compliance State",
              "bounced@example.org": "Member In Compliance State",
              "gone@example.org": "Forgotten Email Not Subscribed",
              "someone@example.invalid": "Invalid Resource",
              "not an address": "Invalid Resource"}
    for email, title in expect.items():
        r = got[email]
        assert (r.ok, r.title, r.final) == (False, title, True), r
        assert r.detail
    assert "compliance state" in got["Unsub@Example.org"].detail
    assert e.get_member(LIST, "unsub@example.org")["status"] == "unsubscribed"  # untouched
    assert len(batch_calls(mc)) == 1  # nothing retried unless asked


def test_compliance_refusals_become_pending_only_when_asked(mc, writer):
    mc.emu.add_member(LIST, "unsub@example.org", status="unsubscribed")
    mc.emu.add_member(LIST, "bounced@example.org", status="cleaned")
    members = [{"email_address": "unsub@example.org", "status": "subscribed"},
               {"email_address": "bounced@example.org", "status": "subscribed"},
               {"email_address": "fine@example.org", "status": "subscribed"}]
    unsub, bounced, fine = writer.batch_update(members, pending_on_compliance=True)
    assert (unsub.ok, unsub.status, unsub.retried_as_pending, unsub.title) == (
        True, "pending", True, "Member In Compliance State")
    assert mc.emu.get_member(LIST, "unsub@example.org")["status"] == "pending"
    assert fine.ok and fine.status == "subscribed" and not fine.retried_as_pending
    # pending is accepted for cleaned members by the API as well (and emails them)
    assert bounced.ok and bounced.status == "pending"
    retry = batch_calls(mc)[-1].body["members"]
    assert [m["email_address"] for m in retry] == ["unsub@example.org", "bounced@example.org"]
    assert {m["status"] for m in retry} == {"pending"}


def test_existing_members_without_update_existing_are_reported(mc, writer):
    mc.emu.add_member(LIST, "here@example.org", status="subscribed")
    (r,) = writer.batch_update([{"email_address": "here@example.org", "status": "unsubscribed"}],
                               update_existing=False)
    assert (r.ok, r.title, r.final) == (False, "Member Exists", True)
    assert batch_calls(mc)[0].body["update_existing"] is False


def test_applying_k_changes_costs_ceil_k_over_500_calls_plus_retries(mc, writer):
    k = 1200
    members = [{"email_address": f"k{i}@example.org", "status": "subscribed"} for i in range(k)]
    mc.emu.faults.queue("503")
    mc.emu.faults.queue("drop-after")  # applied, answer lost: sending again is harmless
    mc.emu.faults.queue("429")
    results = writer.batch_update(members)
    assert all(r.ok and r.status == "subscribed" for r in results)
    assert len(batch_calls(mc)) == math.ceil(k / 500) + 3
    assert writer.client.stats["retries"] == 3
    assert mc.emu.member_count(LIST) == k


def test_a_call_that_fails_after_all_retries_reports_every_member_as_retryable(mc):
    writer = MailchimpWriter(mc.client(retries=1), LIST)
    mc.emu.faults.configure(rate_5xx=1.0)
    results = writer.batch_update([{"email_address": f"x{i}@example.org", "status": "subscribed"}
                                   for i in range(3)])
    assert [(r.ok, r.final) for r in results] == [(False, False)] * 3
    assert results[0].title in ("Internal Server Error", "Service Unavailable")


def test_upsert_needs_status_if_new_for_new_members(mc, writer):
    r = writer.upsert("new@example.org", status="subscribed")
    assert (r.ok, r.title, r.final) == (False, "Invalid Resource", True)
    r = writer.upsert("new@example.org", status_if_new="subscribed",
                      merge_fields={"FNAME": "Nia"})
    assert r.ok and r.status == "subscribed" and r.member_id == member_hash("new@example.org")
    assert mc.emu.get_member(LIST, "new@example.org")["merge_fields"]["FNAME"] == "Nia"
    r = writer.upsert("New@Example.org", status="unsubscribed", status_if_new="unsubscribed")
    assert r.ok and r.status == "unsubscribed"
    put = [q for q in mc.emu.requests if q.method == "PUT"][-1]
    assert put.path.endswith(member_hash("new@example.org"))
    assert put.body == {"email_address": "New@Example.org", "status_if_new": "unsubscribed",
                        "status": "unsubscribed"}


def test_upsert_reports_compliance_and_forgotten_and_retries_pending_when_asked(mc, writer):
    mc.emu.add_member(LIST, "unsub@example.org", status="unsubscribed")
    r = writer.upsert("unsub@example.org", status="subscribed", status_if_new="subscribed")
    assert (r.ok, r.title, r.final) == (False, "Member In Compliance State", True)
    r = writer.upsert("unsub@example.org", status="subscribed", status_if_new="subscribed",
                      pending_on_compliance=True)
    assert r.ok and r.status == "pending" and r.retried_as_pending
    mc.emu.add_member(LIST, "gone@example.org")
    mc.emu.delete_member(LIST, "gone@example.org", permanent=True)
    r = writer.upsert("gone@example.org", status_if_new="pending")
    assert (r.ok, r.title, r.final) == (False, "Forgotten Email Not Subscribed", True)


def test_change_email_patches_and_survives_a_lost_answer(mc, writer):
    mc.emu.add_member(LIST, "old@example.org", status="subscribed")
    r = writer.change_email("old@example.org", "new@example.org")
    assert r.ok and r.member_id == member_hash("new@example.org")
    assert mc.emu.get_member(LIST, "old@example.org") is None
    patch = [q for q in mc.emu.requests if q.method == "PATCH"][-1]
    assert patch.body == {"email_address": "new@example.org"}
    mc.emu.faults.queue("drop-after")
    r = writer.change_email("new@example.org", "newer@example.org")
    assert r.ok and mc.emu.get_member(LIST, "newer@example.org")["status"] == "subscribed"
    r = writer.change_email("nobody@example.org", "x@example.org")
    assert (r.ok, r.title, r.final) == (False, "Resource Not Found", True)


def test_changed_since_lists_members_changed_after_a_time(mc, writer):
    e = mc.emu
    for i in range(1500):
        e.add_member(LIST, f"d{i}@example.org", last_changed=OLD)
    cut = datetime(2026, 1, 1)
    e.update_member(LIST, "d7@example.org", status="unsubscribed",
                    last_changed="2026-02-03T04:05:06+00:00")
    e.delete_member(LIST, "d8@example.org")  # archived now
    for i in range(1100):
        e.update_member(LIST, f"d{i + 100}@example.org", merge_fields={"FNAME": "x"},
                        last_changed=cut + timedelta(days=1, seconds=i))
    got = writer.changed_since(cut)
    assert got[member_hash("d7@example.org")] == datetime(2026, 2, 3, 4, 5, 6)
    assert member_hash("d8@example.org") in got
    assert len(got) == 1102 and member_hash("d1@example.org") not in got
    assert writer.changed_since(datetime.now() + timedelta(days=1)) == {}
