"""The emulator's interest categories, interests and members' interests, over real HTTP,
every request and response checked against the API spec."""

from __future__ import annotations

import time

import pytest
import requests
from support.spec import SPEC_PATH

from civimc_sandbox.emulator import Emulator, EmulatorServer, SpecChecker, member_hash

KEY = "0123456789abcdef0123456789abcdef-us1"
LIST = "a1b2c3d4e5"


@pytest.fixture
def emu():
    e = Emulator(api_key=KEY)
    e.add_list(list_id=LIST, name="Newsletter")
    e.spec_checker = SpecChecker(SPEC_PATH)
    yield e
    assert e.spec_checker.violations == [], e.spec_checker.violations[:5]


@pytest.fixture
def api(emu):
    with EmulatorServer(emu) as server:
        s = requests.Session()
        s.auth = ("anystring", KEY)

        def call(method, path, **kw):
            return s.request(method, server.base_url + path, timeout=30, **kw)
        yield call
        s.close()


def _catalogue(emu):
    topics = emu.add_interest_category(LIST, "Topics", [("9f8e7d6c5b", "Volunteering"),
                                                          ("1a2b3c4d5e", "Campaigns")])
    region = emu.add_interest_category(LIST, "Region", ["North", "South"], type="radio")
    return topics, region


def test_categories_and_interests_are_listed_paged_and_projected(emu, api):
    topics, region = _catalogue(emu)
    cats = api("GET", f"/lists/{LIST}/interest-categories").json()
    assert [(c["id"], c["title"], c["type"]) for c in cats["categories"]] == [
        (topics["id"], "Topics", "checkboxes"), (region["id"], "Region", "radio")]
    assert cats["total_items"] == 2 and cats["list_id"] == LIST
    page = api("GET", f"/lists/{LIST}/interest-categories",
               params={"count": 1, "offset": 1, "fields": "categories.id,total_items"}).json()
    assert page == {"categories": [{"id": region["id"]}], "total_items": 2}
    radio = api("GET", f"/lists/{LIST}/interest-categories", params={"type": "radio"}).json()
    assert [c["title"] for c in radio["categories"]] == ["Region"]
    got = api("GET", f"/lists/{LIST}/interest-categories/{topics['id']}/interests").json()
    assert [(i["id"], i["name"], i["category_id"]) for i in got["interests"]] == [
        ("9f8e7d6c5b", "Volunteering", topics["id"]), ("1a2b3c4d5e", "Campaigns", topics["id"])]
    assert got["total_items"] == 2 and got["category_id"] == topics["id"]
    assert api("GET", f"/lists/{LIST}/interest-categories/0000000000/interests").status_code == 404
    assert api("GET", "/lists/nope/interest-categories").status_code == 404


def test_new_members_get_every_interest_and_writes_set_them(emu, api):
    _catalogue(emu)
    ids = emu.list_state(LIST).catalogue.ids()
    r = api("POST", f"/lists/{LIST}/members", json={
        "email_address": "ann@example.org", "status": "subscribed",
        "interests": {"9f8e7d6c5b": True}})
    assert r.status_code == 200, r.text
    assert r.json()["interests"] == {i: i == "9f8e7d6c5b" for i in ids}
    h = member_hash("ann@example.org")
    before = r.json()["last_changed"]
    time.sleep(1.05)  # last_changed has whole seconds: the change must be seen to move it
    r = api("PATCH", f"/lists/{LIST}/members/{h}", json={"interests": {"1a2b3c4d5e": True,
                                                                         "9f8e7d6c5b": False}})
    assert r.json()["interests"]["1a2b3c4d5e"] is True
    assert r.json()["interests"]["9f8e7d6c5b"] is False
    assert r.json()["last_changed"] > before
    r = api("PUT", f"/lists/{LIST}/members/{h}", json={"interests": {"1a2b3c4d5e": False}})
    assert r.json()["interests"]["1a2b3c4d5e"] is False
    one = api("GET", f"/lists/{LIST}/members/{h}", params={"fields": "interests"}).json()
    assert set(one) == {"interests"} and len(one["interests"]) == len(ids)
    page = api("GET", f"/lists/{LIST}/members", params={"fields": "members.id,members.interests"})
    assert page.json()["members"] == [{"id": h, "interests": one["interests"]}]
    without = api("GET", f"/lists/{LIST}/members/{h}", params={"exclude_fields": "interests"})
    assert "interests" not in without.json()


def test_batch_subscribe_sets_interests_and_reports_an_unknown_one_per_member(emu, api):
    _catalogue(emu)
    emu.add_member(LIST, "old@example.org", "subscribed")
    body = {"update_existing": True, "members": [
        {"email_address": "old@example.org", "interests": {"9f8e7d6c5b": True}},
        {"email_address": "new@example.org", "status": "subscribed",
         "interests": {"0123456789": True}}]}
    out = api("POST", f"/lists/{LIST}", json=body).json()
    assert out["total_updated"] == 1 and out["error_count"] == 1
    assert out["errors"][0]["email_address"] == "new@example.org"
    assert out["errors"][0]["error"] == "Invalid interest ID: '0123456789'."
    assert emu.get_member(LIST, "old@example.org")["interests"] == {"9f8e7d6c5b": True}
    assert emu.get_member(LIST, "new@example.org") is None
    r = api("PATCH", f"/lists/{LIST}/members/{member_hash('old@example.org')}",
            json={"interests": {"0123456789": True}})
    assert r.status_code == 400 and r.json()["title"] == "Invalid Resource"
    assert r.json()["detail"] == "Invalid interest ID: '0123456789'."


def test_an_interest_created_after_a_member_joined_has_no_entry_for_it(emu, api):
    """The case the sync skips (rule I1): nothing has given the member a value for it yet."""
    api("POST", f"/lists/{LIST}/members", json={"email_address": "b@example.org",
                                               "status": "subscribed"})
    cat = emu.add_interest_category(LIST, "Later", ["Added later"])
    iid = cat["interests"]["Added later"]
    assert iid not in api("GET", f"/lists/{LIST}/members/{member_hash('b@example.org')}"
                          ).json()["interests"]
    api("PATCH", f"/lists/{LIST}/members/{member_hash('b@example.org')}",
        json={"interests": {iid: True}})
    assert emu.get_member(LIST, "b@example.org")["interests"] == {iid: True}
    got = api("GET", f"/lists/{LIST}/interest-categories/{cat['id']}/interests").json()
    assert got["interests"][0]["subscriber_count"] == "1"


def test_the_catalogue_survives_a_restart_from_the_state_file(emu, tmp_path):
    from civimc_sandbox.emulator.persist import load_state, save_state
    _catalogue(emu)
    save_state(emu, tmp_path / "state.json")
    again = Emulator(api_key=KEY)
    load_state(again, tmp_path / "state.json")
    assert again.list_state(LIST).catalogue.to_doc() == emu.list_state(LIST).catalogue.to_doc()
