"""The emulator's member activity feeds over real HTTP: fixture events and the events the
emulator records itself, paging, filters, errors, faults; every request and response is checked
against the API spec when the test ends (mc_env)."""

from __future__ import annotations

import pytest
import requests
from support.mc_env import KEY, LIST, mc_env
from support.spec import checker

from civimc_sandbox.emulator import member_hash

FEED = f"/lists/{LIST}/members/{{}}/activity-feed"


@pytest.fixture
def mc(tmp_path, monkeypatch):
    yield from mc_env(tmp_path, monkeypatch)


def get(mc, email, **params):
    return requests.get(mc.server.base_url + FEED.format(member_hash(email)), params=params,
                        auth=("x", KEY), timeout=10)


def kinds(resp):
    return [(e["activity_type"], e["created_at_timestamp"]) for e in resp.json()["activity"]]


def test_fixture_events_come_most_recent_first_with_total_and_paging(mc):
    mc.emu.add_member(LIST, "a@example.org", status="subscribed",
                      last_changed="2026-01-05T00:00:00Z", activity=[
                          {"activity_type": "generic_signup",
                           "created_at_timestamp": "2026-01-03T00:00:00Z"},
                          {"activity_type": "open", "created_at_timestamp": "2026-01-04T00:00:00Z",
                           "campaign_id": "c1"},
                          {"activity_type": "unsub", "created_at_timestamp": "2026-01-02T00:00:00Z"},
                      ])
    r = get(mc, "a@example.org")
    assert r.status_code == 200
    body = r.json()
    assert body["total_items"] == 3 and body["email_id"] == member_hash("a@example.org")
    assert kinds(r) == [("open", "2026-01-04T00:00:00+00:00"),
                        ("generic_signup", "2026-01-03T00:00:00+00:00"),
                        ("unsub", "2026-01-02T00:00:00+00:00")]
    page = get(mc, "a@example.org", count=1, offset=1)
    assert kinds(page) == [("generic_signup", "2026-01-03T00:00:00+00:00")]
    assert page.json()["total_items"] == 3


def test_filters_are_a_comma_separated_list_and_signup_means_every_signup_type(mc):
    mc.emu.add_member(LIST, "b@example.org", activity=[
        {"activity_type": "website_signup", "created_at_timestamp": "2026-01-01T00:00:00Z"},
        {"activity_type": "click", "created_at_timestamp": "2026-01-02T00:00:00Z"},
        {"activity_type": "unsub", "created_at_timestamp": "2026-01-03T00:00:00Z"}])
    r = get(mc, "b@example.org", activity_filters="unsub,signup")
    assert [k for k, _ in kinds(r)] == ["unsub", "website_signup"]
    assert r.json()["total_items"] == 2
    assert [k for k, _ in kinds(get(mc, "b@example.org", activity_filters="click"))] == ["click"]
    bad = get(mc, "b@example.org", activity_filters="unsub,nonsense")
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "activity_filters"
    # The spec check accepts each listed value of the enum and reports the one that is not.
    found = checker().check_request("GET", "/lists/{list_id}/members/{subscriber_hash}/"
                                    "activity-feed", "/x", {"activity_filters": "open,bounce"},
                                    None)
    assert found == []
    found = checker().check_request("GET", "/lists/{list_id}/members/{subscriber_hash}/"
                                    "activity-feed", "/x", {"activity_filters": "open,nope"}, None)
    assert len(found) == 1 and "'nope'" in found[0]
    mc.emu.requests[:] = [r for r in mc.emu.requests if "nonsense" not in str(r.query)]


def test_api_subscribe_and_unsubscribe_are_recorded_but_profile_edits_are_not(mc):
    mc.emu.clock = lambda: "2026-02-01T10:00:00+00:00"
    api = requests.Session()
    api.auth = ("x", KEY)
    base = mc.server.base_url + f"/lists/{LIST}/members"
    assert api.post(base, json={"email_address": "c@example.org", "status": "subscribed"},
                    timeout=10).status_code == 200
    mc.emu.clock = lambda: "2026-02-02T10:00:00+00:00"
    h = member_hash("c@example.org")
    assert api.patch(f"{base}/{h}", json={"status": "unsubscribed"}, timeout=10).ok
    mc.emu.clock = lambda: "2026-02-03T10:00:00+00:00"
    assert api.patch(f"{base}/{h}", json={"merge_fields": {"FNAME": "Cee"}}, timeout=10).ok
    mc.emu.clock = lambda: "2026-02-04T10:00:00+00:00"
    assert api.put(f"{base}/{h}", json={"status": "pending"}, timeout=10).ok  # not a signup yet
    r = get(mc, "c@example.org")
    assert kinds(r) == [("unsub", "2026-02-02T10:00:00+00:00"),
                        ("generic_signup", "2026-02-01T10:00:00+00:00")]
    member = api.get(f"{base}/{h}", timeout=10).json()
    assert member["last_changed"] == "2026-02-04T10:00:00+00:00"  # moved by every edit


def test_direct_set_up_status_edits_are_recorded_at_their_time(mc):
    mc.emu.add_member(LIST, "d@example.org", status="subscribed",
                      last_changed="2026-01-01T00:00:00Z")
    mc.emu.update_member(LIST, "d@example.org", status="unsubscribed",
                         last_changed="2026-01-02T00:00:00Z")
    mc.emu.update_member(LIST, "d@example.org", merge_fields={"FNAME": "Dee"},
                         last_changed="2026-01-05T00:00:00Z")
    assert kinds(get(mc, "d@example.org")) == [("unsub", "2026-01-02T00:00:00+00:00")]


def test_a_member_without_events_has_an_empty_feed_and_a_stranger_404(mc):
    mc.emu.add_member(LIST, "e@example.org")
    r = get(mc, "e@example.org", activity_filters="unsub")
    assert r.json()["activity"] == [] and r.json()["total_items"] == 0
    assert get(mc, "nobody@example.org").status_code == 404


def test_count_is_clamped_at_1000(mc):
    events = [{"activity_type": "open", "created_at_timestamp": f"2026-01-01T00:{i // 60:02d}:"
               f"{i % 60:02d}Z"} for i in range(1200)]
    mc.emu.add_member(LIST, "f@example.org", activity=events)
    mc.spec_items = 5
    r = get(mc, "f@example.org", count=5000)
    assert len(r.json()["activity"]) == 1000 and r.json()["total_items"] == 1200


def test_faults_apply_to_the_feed(mc):
    mc.emu.add_member(LIST, "g@example.org")
    mc.emu.faults.queue("503")
    assert get(mc, "g@example.org").status_code == 503
    assert get(mc, "g@example.org").status_code == 200
    assert mc.emu.faults.injected["503"] == 1


def test_a_restarted_emulator_keeps_the_feeds(mc, tmp_path):
    from civimc_sandbox.emulator import Emulator
    from civimc_sandbox.emulator.persist import load_state, save_state

    mc.emu.add_member(LIST, "h@example.org", status="subscribed",
                      last_changed="2026-01-01T00:00:00Z",
                      activity=[{"activity_type": "generic_signup",
                                 "created_at_timestamp": "2026-01-01T00:00:00Z"}])
    mc.emu.update_member(LIST, "h@example.org", status="unsubscribed",
                         last_changed="2026-01-02T00:00:00Z")
    before = mc.emu.dispatch("GET", f"/lists/{LIST}/members/h@example.org/activity-feed").body
    save_state(mc.emu, tmp_path / "state.json")
    again = Emulator(api_key=KEY)
    load_state(again, tmp_path / "state.json")
    after = again.dispatch("GET", f"/lists/{LIST}/members/h@example.org/activity-feed").body
    assert after["activity"] == before["activity"] and after["total_items"] == 2


def test_fields_keep_only_the_named_parts_of_each_event_directly_and_in_a_batch(mc):
    import io
    import json
    import tarfile
    import time

    mc.emu.add_member(LIST, "f@example.org", activity=[
        {"activity_type": "unsub", "created_at_timestamp": "2026-01-02T00:00:00Z",
         "is_admin_unsubscribed": False, "unsubscribe_reason": "N/A"}])
    fields = "activity.activity_type,activity.created_at_timestamp"
    want = {"activity": [{"activity_type": "unsub",
                          "created_at_timestamp": "2026-01-02T00:00:00+00:00"}]}
    assert get(mc, "f@example.org", fields=fields).json() == want
    op = {"method": "GET", "path": FEED.format(member_hash("f@example.org")),
          "params": {"fields": fields, "count": 10}, "operation_id": "feed"}
    s = requests.Session()
    s.auth = ("x", KEY)
    batch = s.post(mc.server.base_url + "/batches", json={"operations": [op]}, timeout=10).json()
    for _ in range(100):
        done = s.get(f"{mc.server.base_url}/batches/{batch['id']}", timeout=10).json()
        if done["status"] == "finished":
            break
        time.sleep(0.05)
    archive = requests.get(done["response_body_url"], timeout=10).content
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        items = [i for m in tar if m.isfile() for i in json.loads(tar.extractfile(m).read())]
    assert [(i["operation_id"], i["status_code"], json.loads(i["response"])) for i in items] == \
        [("feed", 200, want)]
