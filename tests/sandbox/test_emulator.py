"""The Mailchimp emulator over real HTTP: behaviour, error texts, limits, faults, spec shapes."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import random
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

import jsonschema
import pytest
import requests
from support.spec import SPEC_PATH

from civimc_sandbox.emulator import (
    EMULATOR_CHOICES,
    Emulator,
    EmulatorServer,
    SpecChecker,
    member_hash,
)
from civimc_sandbox.emulator.spec import close_schema, resolve_refs

KEY = "0123456789abcdef0123456789abcdef-us1"
LIST = "a1b2c3d4e5"
ERRORS_TYPE = "https://mailchimp.com/developer/marketing/docs/errors/"


# --- fixtures -------------------------------------------------------------------

@pytest.fixture
def emu():
    """An emulator whose every response is checked against the spec's response schemas."""
    e = Emulator(api_key=KEY)
    e.add_list(list_id=LIST, name="Newsletter")
    e.spec_checker = SpecChecker(_spec_path())
    yield e
    bad = [v for v in e.spec_checker.violations if v["kind"] == "response"]
    assert not bad, bad[:5]


@pytest.fixture
def server(emu):
    with EmulatorServer(emu) as s:
        yield s


class Api:
    """A tiny client: ``api.get("/lists/x")`` etc. against the running server."""

    def __init__(self, base: str, auth=("anystring", KEY)):
        self.base = base
        self.s = requests.Session()
        self.s.auth = auth

    def __getattr__(self, method):
        def call(path, **kw):
            kw.setdefault("timeout", 30)
            return self.s.request(method.upper(), self.base + path, **kw)
        return call


@pytest.fixture
def api(server):
    a = Api(server.base_url)
    yield a
    a.s.close()


def members_path(h: str = "") -> str:
    return f"/lists/{LIST}/members" + (f"/{h}" if h else "")


# --- spec validation ----------------------------------------------------------------

def _spec_path() -> str:
    return str(SPEC_PATH)


@functools.cache
def _spec() -> dict:
    return json.loads(Path(_spec_path()).read_text(encoding="utf-8"))


def _spec_schema(path: str, method: str, status: int | str) -> dict:
    spec = _spec()
    responses = spec["paths"][path][method.lower()]["responses"]
    resp = responses.get(str(status)) or responses["default"]
    return resolve_refs(resp["schema"], spec)


def assert_matches_spec(instance, path: str, method: str, status: int | str = 200,
                        closed: bool = True) -> None:
    schema = _spec_schema(path, method, status)
    if closed:
        schema = close_schema(schema)
    jsonschema.Draft4Validator(schema).validate(instance)


def assert_problem(r: requests.Response, status: int, title: str, detail: str | None = None):
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"] == "application/problem+json; charset=utf-8"
    doc = r.json()
    assert doc["type"] == ERRORS_TYPE
    assert doc["title"] == title, doc
    assert doc["status"] == status
    assert doc["instance"] == r.headers["X-Request-Id"]
    if detail is not None:
        assert doc["detail"] == detail
    return doc


# --- basics -----------------------------------------------------------------------------

def test_member_hash_is_md5_of_trimmed_lowercase_email():
    assert member_hash(" Ada@Example.ORG ") == member_hash("ada@example.org")
    assert member_hash("ada@example.org") == hashlib.md5(b"ada@example.org").hexdigest()


def test_ping_headers_and_request_id(api, server):
    r = api.get("/ping")
    assert r.status_code == 200
    assert r.json() == {"health_status": "Everything's Chimpy!"}
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    assert len(r.headers["X-Request-Id"]) == 36
    assert server.base_url.startswith("http://127.0.0.1:") and server.base_url.endswith("/3.0")
    assert_matches_spec(r.json(), "/ping", "get")


@pytest.mark.parametrize("header", ["Bearer {k}", "OAuth {k}", "apikey {k}"])
def test_token_style_auth_headers_are_accepted(server, header):
    r = requests.get(server.base_url + "/ping", headers={"Authorization": header.format(k=KEY)},
                     timeout=10)
    assert r.status_code == 200


def test_auth_errors(server):
    r = requests.get(server.base_url + "/ping", timeout=10)
    doc = assert_problem(r, 401, "API Key Missing")
    assert_matches_spec(doc, "/ping", "get", "default")
    r = requests.get(server.base_url + "/lists/" + LIST, auth=("u", "nope-us1"), timeout=10)
    assert_problem(r, 401, "API Key Invalid", "Your API key may be invalid, or you've attempted "
                                              "to access the wrong datacenter.")


def test_not_found_and_method_not_allowed(api):
    doc = assert_problem(api.get("/lists/nosuchlist"), 404, "Resource Not Found",
                         "The requested resource could not be found.")
    assert_matches_spec(doc, "/lists/{list_id}", "get", "default")
    assert_problem(api.get("/no/such/path"), 404, "Resource Not Found")
    assert_problem(api.get(members_path(member_hash("nobody@example.org"))), 404,
                   "Resource Not Found")
    r = api.put(f"/lists/{LIST}", json={})
    assert_problem(r, 405, "Method Not Allowed")
    assert r.headers["Allow"] == "GET, POST"
    assert_problem(api.post("/lists/x/members", data=b"{not json"), 404, "Resource Not Found")
    assert_problem(api.post(members_path(), data=b"{not json"), 400, "JSON Parse Error")


# --- lists --------------------------------------------------------------------------------

def test_get_list_matches_spec_and_counts(api, emu):
    for i, status in enumerate(["subscribed", "subscribed", "unsubscribed", "cleaned", "pending",
                                "archived", "transactional"]):
        emu.add_member(LIST, f"p{i}@example.org", status=status)
    body = api.get(f"/lists/{LIST}").json()
    assert_matches_spec(body, "/lists/{list_id}", "get")
    assert body["id"] == LIST and body["name"] == "Newsletter"
    assert body["stats"]["member_count"] == 2  # subscribed only
    assert body["stats"]["unsubscribe_count"] == 1 and body["stats"]["cleaned_count"] == 1
    assert "total_contacts" not in body["stats"]
    body = api.get(f"/lists/{LIST}", params={"include_total_contacts": "true"}).json()
    assert body["stats"]["total_contacts"] == 7
    assert_matches_spec(body, "/lists/{list_id}", "get")
    part = api.get(f"/lists/{LIST}", params={"fields": "id,stats.member_count"}).json()
    assert part == {"id": LIST, "stats": {"member_count": 2}}
    part = api.get(f"/lists/{LIST}", params={"exclude_fields": "_links,stats,contact"}).json()
    assert "_links" not in part and "stats" not in part and part["name"] == "Newsletter"


def test_lists_collection_and_merge_fields(api):
    body = api.get("/lists").json()
    assert body["total_items"] == 1 and body["lists"][0]["id"] == LIST
    assert_matches_spec(body, "/lists", "get")
    mf = api.get(f"/lists/{LIST}/merge-fields").json()
    assert [m["tag"] for m in mf["merge_fields"]] == ["FNAME", "LNAME", "ADDRESS", "PHONE"]
    assert_matches_spec(mf, "/lists/{list_id}/merge-fields", "get")


# --- members: reads ------------------------------------------------------------------------

def _load(emu, n, **kw):
    statuses = kw.get("statuses", ["subscribed"])
    emu.load_members(LIST, ({"email_address": f"m{i:05d}@example.org",
                             "status": statuses[i % len(statuses)],
                             "last_changed": f"2026-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}+00:00",
                             "merge_fields": {"FNAME": f"F{i}", "LNAME": "L"}}
                            for i in range(n)))


def test_members_paging_count_offset_total_and_fields(api, emu):
    _load(emu, 25)
    r = api.get(members_path())
    body = r.json()
    assert len(body["members"]) == 10  # default count
    assert body["total_items"] == 25 and body["list_id"] == LIST
    assert [m["email_address"] for m in body["members"]][:2] == ["m00000@example.org",
                                                                 "m00001@example.org"]
    seen = []
    for offset in range(0, 30, 7):
        page = api.get(members_path(), params={
            "count": 7, "offset": offset,
            "fields": "members.email_address,members.status,members.merge_fields.FNAME,total_items",
        }).json()
        assert set(page) == {"members", "total_items"}
        for m in page["members"]:
            assert set(m) == {"email_address", "status", "merge_fields"}
            assert set(m["merge_fields"]) == {"FNAME"}
        seen += [m["email_address"] for m in page["members"]]
    assert seen == [f"m{i:05d}@example.org" for i in range(25)]
    assert api.get(members_path(), params={"offset": 100}).json()["members"] == []
    # Observed on the real API: a bare member key in exclude_fields is ignored.
    page = api.get(members_path(), params={"exclude_fields": "email_address,members._links"}).json()
    assert "email_address" in page["members"][0] and "_links" not in page["members"][0]
    assert_problem(api.get(members_path(), params={"fields": "members.nope,total_items"}),
                   422, "Requested Fields Invalid")
    assert_problem(api.get(members_path(), params={"count": "ten"}), 400, "Invalid Resource")


def test_count_above_1000_is_clamped_or_rejected(api, emu):
    _load(emu, 1005)
    page = api.get(members_path(), params={"count": 5000, "fields": "members.id"}).json()
    assert len(page["members"]) == 1000
    emu.count_over_max = "error"
    assert_problem(api.get(members_path(), params={"count": 1001}), 400, "Invalid Resource")


def test_status_filter_covers_all_six_statuses(api, emu):
    statuses = ["subscribed", "unsubscribed", "cleaned", "pending", "archived", "transactional"]
    _load(emu, 60, statuses=statuses)
    for s in statuses:
        page = api.get(members_path(), params={"status": s, "count": 100}).json()
        assert page["total_items"] == 10
        assert {m["status"] for m in page["members"]} == {s}
    everything = api.get(members_path(), params={"count": 100}).json()
    assert everything["total_items"] == 60  # our choice: no status => every status
    assert_problem(api.get(members_path(), params={"status": "bogus"}), 400, "Invalid Resource")


def test_since_and_before_last_changed_and_sorting(api, emu):
    _load(emu, 120)  # last_changed = 2026-01-01T00:00:00 + i seconds
    page = api.get(members_path(), params={"since_last_changed": "2026-01-01T00:01:39Z",
                                           "count": 100}).json()
    assert page["total_items"] == 20  # i > 99, strictly after
    ms = api.get(members_path(), params={"since_last_changed": "2026-01-01T00:01:38.999Z",
                                         "count": 100}).json()
    assert ms["total_items"] == 21
    before = api.get(members_path(), params={"before_last_changed": "2026-01-01T00:00:05+00:00"})
    assert before.json()["total_items"] == 5
    emu.update_member(LIST, "m00003@example.org", last_changed="2026-02-01T00:00:00+00:00")
    asc = api.get(members_path(), params={"sort_field": "last_changed", "sort_dir": "ASC",
                                          "count": 1000, "fields": "members.email_address"}).json()
    assert asc["members"][-1]["email_address"] == "m00003@example.org"
    desc = api.get(members_path(), params={"sort_field": "last_changed", "sort_dir": "DESC",
                                           "count": 1}).json()
    assert desc["members"][0]["email_address"] == "m00003@example.org"
    assert desc["members"][0]["last_changed"] == "2026-02-01T00:00:00+00:00"
    assert_problem(api.get(members_path(), params={"since_last_changed": "yesterday"}),
                   400, "Invalid Resource")


def test_member_and_collection_match_spec(api, emu):
    emu.add_member(LIST, "ada@example.org", last_changed="2026-01-05T09:30:00+00:00",
                   merge_fields={"FNAME": "Ada", "LNAME": "Lovelace"}, tags=["VIP"],
                   timestamp_opt="2026-01-05T09:30:00Z")
    emu.add_member(LIST, "bob@example.org", status="unsubscribed", unsubscribe_reason="N/A")
    coll = api.get(members_path()).json()
    assert_matches_spec(coll, "/lists/{list_id}/members", "get")
    m = api.get(members_path(member_hash("ada@example.org"))).json()
    assert_matches_spec(m, "/lists/{list_id}/members/{subscriber_hash}", "get")
    assert m["last_changed"] == "2026-01-05T09:30:00+00:00"
    assert m["timestamp_opt"] == "2026-01-05T09:30:00+00:00"
    assert m["timestamp_signup"] == "" and m["ip_signup"] == ""
    assert m["full_name"] == "Ada Lovelace" and m["tags"][0]["name"] == "VIP"
    assert m["merge_fields"] == {"FNAME": "Ada", "LNAME": "Lovelace", "ADDRESS": "", "PHONE": ""}
    assert {link["rel"] for link in m["_links"]} >= {"self", "upsert", "delete_permanent"}
    assert m["_links"][0]["href"].startswith(api.base)


def test_member_get_by_hash_email_and_contact_id(api, emu):
    emu.add_member(LIST, "Zoë+tag@Example.org")
    h = member_hash("zoë+tag@example.org")
    by_hash = api.get(members_path(h)).json()
    assert by_hash["id"] == h
    by_email = api.get(members_path(quote("Zoë+tag@Example.org", safe=""))).json()
    assert by_email["id"] == h
    by_contact = api.get(members_path(by_hash["contact_id"])).json()
    assert by_contact["id"] == h
    assert emu.get_member(LIST, "ZOË+TAG@example.org")["id"] == h


# --- members: writes --------------------------------------------------------------------------

def test_post_member_exists_and_archived_revive(api, emu):
    r = api.post(members_path(), json={"email_address": "new@example.org", "status": "subscribed",
                                       "merge_fields": {"FNAME": "New"}, "tags": ["a"]})
    assert r.status_code == 200
    created = r.json()
    assert_matches_spec(created, "/lists/{list_id}/members", "post")
    assert created["status"] == "subscribed" and created["timestamp_opt"] != ""
    assert created["source"] == "API - Generic" and created["tags_count"] == 1
    assert_problem(api.post(members_path(), json={"email_address": "NEW@example.org",
                                                  "status": "pending"}),
                   400, "Member Exists", "NEW@example.org is already a list member. "
                                         "Use PUT to insert or update list members.")
    assert api.delete(members_path(created["id"])).status_code == 204
    assert emu.get_member(LIST, "new@example.org")["status"] == "archived"
    r = api.post(members_path(), json={"email_address": "new@example.org", "status": "subscribed"})
    assert r.status_code == 200 and r.json()["status"] == "subscribed"
    doc = assert_problem(api.post(members_path(), json={"status": "subscribed"}), 400,
                         "Invalid Resource")
    assert doc["errors"] == [{"field": "", "message":
                              "Required fields were not provided: email_address"}]


def test_put_upsert_rules(api, emu):
    emu.clock = lambda: 1_800_000_000
    h = member_hash("put@example.org")
    doc = assert_problem(api.put(members_path(h), json={"email_address": "put@example.org",
                                                        "status": "subscribed"}),
                         400, "Invalid Resource")
    assert "status_if_new" in doc["errors"][0]["message"]
    r = api.put(members_path(h), json={"email_address": "put@example.org",
                                       "status_if_new": "pending", "status": "subscribed"})
    assert r.status_code == 200 and r.json()["status"] == "pending"  # status_if_new for new
    assert_matches_spec(r.json(), "/lists/{list_id}/members/{subscriber_hash}", "put")
    emu.clock = lambda: 1_800_000_100
    r = api.put(members_path(h), json={"email_address": "put@example.org",
                                       "status_if_new": "pending", "status": "subscribed",
                                       "merge_fields": {"LNAME": "P"}})
    m = r.json()
    assert m["status"] == "subscribed"  # status applies to existing members
    assert m["merge_fields"]["LNAME"] == "P"
    assert m["last_changed"] == "2027-01-15T08:01:40+00:00"
    # A PUT without status leaves the status alone but still moves last_changed.
    emu.clock = lambda: 1_800_000_200
    m = api.put(members_path(h), json={"email_address": "put@example.org",
                                       "status_if_new": "unsubscribed"}).json()
    assert m["status"] == "subscribed" and m["last_changed"] == "2027-01-15T08:03:20+00:00"
    assert_problem(api.put(members_path(member_hash("other@example.org")),
                           json={"email_address": "put2@example.org", "status_if_new": "subscribed"}),
                   400, "Invalid Resource")
    assert_problem(api.put(members_path(h), json={"status": "archived"}), 400, "Invalid Resource")


def test_patch_missing_member_is_404_and_patch_updates(api, emu):
    assert_problem(api.patch(members_path(member_hash("ghost@example.org")),
                             json={"status": "subscribed"}), 404, "Resource Not Found")
    emu.add_member(LIST, "pat@example.org", merge_fields={"FNAME": "Pat"})
    m = api.patch(members_path("pat@example.org"), json={"merge_fields": {"LNAME": "Q"}}).json()
    assert m["merge_fields"]["FNAME"] == "Pat" and m["merge_fields"]["LNAME"] == "Q"
    assert_matches_spec(m, "/lists/{list_id}/members/{subscriber_hash}", "patch")
    m = api.patch(members_path("pat@example.org"),
                  json={"email_address": "pat2@example.org"}).json()
    assert m["id"] == member_hash("pat2@example.org")
    assert emu.get_member(LIST, "pat@example.org") is None


@pytest.mark.parametrize("status", ["cleaned", "pending", "archived"])
def test_delete_is_refused_for_cleaned_pending_archived(api, emu, status):
    emu.add_member(LIST, "x@example.org", status=status)
    r = api.delete(members_path(member_hash("x@example.org")))
    assert_problem(r, 405, "Method Not Allowed")
    assert r.headers["Allow"] == "GET, PUT"


def test_delete_archives_subscribed_member(api, emu):
    emu.add_member(LIST, "y@example.org", last_changed="2020-01-01T00:00:00+00:00")
    r = api.delete(members_path(member_hash("y@example.org")))
    assert r.status_code == 204 and r.content == b""
    m = emu.get_member(LIST, "y@example.org")
    assert m["status"] == "archived" and m["last_changed"] != "2020-01-01T00:00:00+00:00"
    assert_problem(api.delete(members_path("nobody@example.org")), 404, "Resource Not Found")


def test_compliance_state_blocks_resubscribe_but_allows_pending(api, emu):
    emu.add_member(LIST, "gone@example.org", status="unsubscribed")
    emu.add_member(LIST, "bounced@example.org", status="cleaned")
    detail = ("gone@example.org is in a compliance state due to unsubscribe, bounce, or "
              "compliance review and cannot be subscribed.")
    h = member_hash("gone@example.org")
    assert_problem(api.put(members_path(h), json={"email_address": "gone@example.org",
                                                  "status_if_new": "subscribed",
                                                  "status": "subscribed"}),
                   400, "Member In Compliance State", detail)
    assert_problem(api.patch(members_path(h), json={"status": "subscribed"}),
                   400, "Member In Compliance State", detail)
    assert_problem(api.patch(members_path("bounced@example.org"), json={"status": "subscribed"}),
                   400, "Member In Compliance State")
    r = api.patch(members_path(h), json={"status": "pending"})
    assert r.status_code == 200 and r.json()["status"] == "pending"
    # Archived while unsubscribed: still in compliance state when revived (our choice).
    emu.add_member(LIST, "arch@example.org", status="unsubscribed")
    assert api.delete(members_path("arch@example.org")).status_code == 204
    assert_problem(api.post(members_path(), json={"email_address": "arch@example.org",
                                                  "status": "subscribed"}),
                   400, "Member In Compliance State")


def test_delete_permanent_leaves_a_tombstone(api, emu):
    emu.add_member(LIST, "forget@example.org")
    h = member_hash("forget@example.org")
    r = api.post(members_path(h) + "/actions/delete-permanent")
    assert r.status_code == 204
    assert_problem(api.get(members_path(h)), 404, "Resource Not Found")
    assert emu.is_forgotten(LIST, "forget@example.org")
    detail = ("forget@example.org was permanently deleted and cannot be re-imported. "
              "The contact must re-subscribe to get back on the list.")
    assert_problem(api.post(members_path(), json={"email_address": "forget@example.org",
                                                  "status": "subscribed"}),
                   400, "Forgotten Email Not Subscribed", detail)
    assert_problem(api.put(members_path(h), json={"email_address": "forget@example.org",
                                                  "status_if_new": "pending"}),
                   400, "Forgotten Email Not Subscribed", detail)
    body = api.post(f"/lists/{LIST}", json={"members": [
        {"email_address": "forget@example.org", "status": "subscribed"}]}).json()
    assert body["errors"][0]["error"] == detail
    assert body["errors"][0]["error_code"] == "ERROR_GENERIC"
    assert_problem(api.post(members_path(h) + "/actions/delete-permanent"), 404,
                   "Resource Not Found")


def test_fake_and_invalid_emails(api, emu):
    assert_problem(api.post(members_path(), json={"email_address": "who@example.invalid",
                                                  "status": "subscribed"}),
                   400, "Invalid Resource",
                   "who@example.invalid looks fake or invalid, please enter a real email address.")
    assert_problem(api.post(members_path(), json={"email_address": "not-an-email",
                                                  "status": "subscribed"}),
                   400, "Invalid Resource", "Please provide a valid email address.")
    emu.fake_domains.add("example.com")
    assert_problem(api.post(members_path(), json={"email_address": "fooboo@example.com",
                                                  "status": "subscribed"}),
                   400, "Invalid Resource")


def test_tags_endpoint(api, emu):
    emu.add_member(LIST, "t@example.org")
    h = member_hash("t@example.org")
    r = api.post(members_path(h) + "/tags", json={"tags": [{"name": "Donor", "status": "active"},
                                                          {"name": "Board", "status": "active"}]})
    assert r.status_code == 204
    api.post(members_path(h) + "/tags", json={"tags": [{"name": "Board", "status": "inactive"}]})
    tags = api.get(members_path(h) + "/tags").json()
    assert [t["name"] for t in tags["tags"]] == ["Donor"] and tags["total_items"] == 1
    assert_problem(api.post(members_path("nobody@example.org") + "/tags", json={"tags": []}),
                   404, "Resource Not Found")


# --- batch subscribe (POST /lists/{id}) ------------------------------------------------------

def test_batch_subscribe_shape_and_error_mapping(api, emu):
    emu.add_member(LIST, "old@example.org", status="subscribed")
    emu.add_member(LIST, "unsub@example.org", status="unsubscribed")
    members = [
        {"email_address": "fresh@example.org", "status": "subscribed",
         "merge_fields": {"FNAME": "Fresh"}},
        {"email_address": "old@example.org", "status": "unsubscribed"},
        {"email_address": "unsub@example.org", "status": "subscribed"},
        {"email_address": "bad-address", "status": "subscribed"},
        {"email_address": "x@example.invalid", "status": "subscribed"},
    ]
    body = api.post(f"/lists/{LIST}", json={"members": members}).json()
    # Open schema: the spec's member shape for this endpoint is an older subset of the
    # member object (no contact_id, web_id, source...), which the emulator sends in full.
    assert_matches_spec(body, "/lists/{list_id}", "post", closed=False)
    assert set(body) == {"new_members", "updated_members", "errors", "total_created",
                         "total_updated", "error_count", "_links"}
    assert [m["email_address"] for m in body["new_members"]] == ["fresh@example.org"]
    assert body["total_created"] == 1 and body["total_updated"] == 0 and body["error_count"] == 4
    errors = {e["email_address"]: e for e in body["errors"]}
    assert errors["old@example.org"]["error_code"] == "ERROR_CONTACT_EXISTS"
    assert errors["old@example.org"]["error"] == (
        "old@example.org is already a list member, do you want to update? "
        "please provide update_existing:true in the request body")
    assert errors["unsub@example.org"]["error_code"] == "ERROR_CONTACT_EXISTS"
    assert errors["bad-address"]["error"] == "Please provide a valid email address."
    assert errors["bad-address"]["error_code"] == "ERROR_GENERIC"
    assert errors["x@example.invalid"]["error"].endswith("looks fake or invalid, please enter a "
                                                         "real email address.")
    body = api.post(f"/lists/{LIST}", json={"members": members[:3], "update_existing": True}).json()
    assert body["total_created"] == 0 and body["total_updated"] == 2 and body["error_count"] == 1
    assert body["errors"][0]["error_code"] == "ERROR_GENERIC"
    assert body["errors"][0]["error"] == (
        "unsub@example.org is in a compliance state due to unsubscribe, bounce, or compliance "
        "review and cannot be subscribed.")
    assert emu.get_member(LIST, "old@example.org")["status"] == "unsubscribed"


def test_put_revives_archived_and_batch_handles_repeats(api, emu):
    emu.add_member(LIST, "arch@example.org", status="archived")
    m = api.put(members_path("arch@example.org"), json={"email_address": "arch@example.org",
                                                        "status_if_new": "pending"}).json()
    assert m["status"] == "pending"
    twice = [{"email_address": "rep@example.org", "status": "subscribed"},
             {"email_address": "REP@example.org", "status": "unsubscribed"}]
    body = api.post(f"/lists/{LIST}", json={"members": twice}).json()
    assert body["total_created"] == 1 and body["errors"][0]["error_code"] == "ERROR_CONTACT_EXISTS"
    body = api.post(f"/lists/{LIST}", params={"skip_duplicate_check": "true"},
                    json={"members": [dict(t, email_address="dup@example.org") for t in twice]}).json()
    assert body["total_created"] == 1 and body["error_count"] == 0
    assert emu.get_member(LIST, "dup@example.org")["status"] == "subscribed"  # first one wins


def test_batch_subscribe_rejects_more_than_500(api):
    members = [{"email_address": f"b{i}@example.org", "status": "subscribed"} for i in range(501)]
    assert_problem(api.post(f"/lists/{LIST}", json={"members": members}), 400, "Invalid Resource")
    r = api.post(f"/lists/{LIST}", json={"members": members[:500]})
    assert r.status_code == 200 and r.json()["total_created"] == 500


# --- /batches ---------------------------------------------------------------------------------

def _download_results(url: str) -> list[dict]:
    r = requests.get(url, timeout=30)
    assert r.status_code == 200
    items = []
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        for member in tar.getmembers():
            assert member.name.endswith(".json")
            items += json.loads(tar.extractfile(member).read())
    return items


def test_batches_lifecycle_and_results_archive(api, emu):
    emu.batch_finish_after = None  # finish by polling only: deterministic
    emu.add_member(LIST, "keep@example.org")
    emu.add_member(LIST, "unsub@example.org", status="unsubscribed")
    ops = [{"method": "PUT", "path": f"/lists/{LIST}/members/{member_hash(f'b{i}@example.org')}",
            "body": json.dumps({"email_address": f"b{i}@example.org", "status_if_new": "subscribed"}),
            "operation_id": f"put-{i}"} for i in range(250)]
    ops += [
        {"method": "PATCH", "path": f"/lists/{LIST}/members/{member_hash('ghost@example.org')}",
         "body": json.dumps({"status": "unsubscribed"}), "operation_id": "patch-ghost"},
        {"method": "PATCH", "path": f"/lists/{LIST}/members/{member_hash('unsub@example.org')}",
         "body": json.dumps({"status": "subscribed"}), "operation_id": "resub"},
        {"method": "GET", "path": f"/lists/{LIST}/members/{member_hash('keep@example.org')}",
         "params": {"fields": "email_address,status"}, "operation_id": "get-keep"},
        {"method": "DELETE", "path": f"/lists/{LIST}/members/{member_hash('keep@example.org')}",
         "operation_id": "archive-keep"},
    ]
    r = api.post("/batches", json={"operations": ops})
    assert r.status_code == 200
    batch = r.json()
    assert_matches_spec(batch, "/batches", "post")
    assert batch["status"] == "pending" and batch["total_operations"] == 254
    assert batch["response_body_url"] == ""
    assert emu.get_member(LIST, "b0@example.org") is None  # nothing ran yet
    first = api.get(f"/batches/{batch['id']}").json()
    assert first["status"] == "started"
    done = api.get(f"/batches/{batch['id']}").json()
    assert_matches_spec(done, "/batches/{batch_id}", "get")
    assert done["status"] == "finished"
    assert done["finished_operations"] == 254 and done["errored_operations"] == 2
    assert done["completed_at"] != ""
    items = _download_results(done["response_body_url"])
    by_id = {i["operation_id"]: i for i in items}
    assert len(by_id) == 254
    assert by_id["put-0"]["status_code"] == 200
    assert json.loads(by_id["put-0"]["response"])["email_address"] == "b0@example.org"
    ghost = json.loads(by_id["patch-ghost"]["response"])
    assert by_id["patch-ghost"]["status_code"] == 404 and ghost["title"] == "Resource Not Found"
    assert json.loads(by_id["resub"]["response"])["title"] == "Member In Compliance State"
    assert json.loads(by_id["get-keep"]["response"]) == {"email_address": "keep@example.org",
                                                          "status": "subscribed"}
    assert by_id["archive-keep"]["status_code"] == 204 and by_id["archive-keep"]["response"] == ""
    assert emu.get_member(LIST, "keep@example.org")["status"] == "archived"
    listing = api.get("/batches").json()
    assert listing["total_items"] == 1
    assert_matches_spec(listing, "/batches", "get")
    assert api.delete(f"/batches/{batch['id']}").status_code == 204
    assert_problem(api.get(f"/batches/{batch['id']}"), 404, "Resource Not Found")


def test_batches_finish_on_their_own_and_validate_operations(api, emu):
    emu.batch_polls_to_finish = None
    emu.batch_finish_after = 0.1
    op = {"method": "POST", "path": f"/lists/{LIST}/members", "operation_id": "add",
          "body": json.dumps({"email_address": "later@example.org", "status": "subscribed"})}
    batch = api.post("/batches", json={"operations": [op]}).json()
    for _ in range(100):
        if emu.get_member(LIST, "later@example.org") is not None:
            break
        time.sleep(0.05)
    status = api.get(f"/batches/{batch['id']}").json()
    assert status["status"] == "finished" and status["errored_operations"] == 0
    assert_problem(api.post("/batches", json={"operations": [{"method": "GET"}]}),
                   400, "Invalid Resource")
    bad_body = {"method": "POST", "path": "/lists", "body": {"not": "a string"}}
    assert_problem(api.post("/batches", json={"operations": [bad_body]}), 400, "Invalid Resource")


# --- connection limit and faults ---------------------------------------------------------------

def _fire(base: str, n: int, path: str = f"/lists/{LIST}") -> list[requests.Response]:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def one(i):
        with requests.Session() as s:
            s.auth = ("u", KEY)
            barrier.wait()
            results[i] = s.get(base + path, timeout=30)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_more_than_ten_simultaneous_requests_get_429(server, emu):
    emu.faults.configure(rate_slow=1.0, slow_seconds=1.0)
    results = _fire(server.base_url, 15)
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 10 and codes.count(429) == 5, codes
    limited = next(r for r in results if r.status_code == 429)
    assert_problem(limited, 429, "Too Many Requests",
                   "You have exceeded the limit of 10 simultaneous connections.")
    assert emu.peak_inflight >= 11
    emu.faults.reset()
    emu.max_connections = 3
    emu.faults.configure(rate_slow=1.0, slow_seconds=0.5)
    codes = sorted(r.status_code for r in _fire(server.base_url, 5))
    assert codes == [200, 200, 200, 429, 429]


@pytest.mark.parametrize("kind,status,title", [
    ("429", 429, "Too Many Requests"),
    ("500", 500, "Internal Server Error"),
    ("503", 503, "Service Unavailable"),
])
def test_problem_faults(api, emu, kind, status, title):
    emu.faults.queue(kind)
    assert_problem(api.get(f"/lists/{LIST}"), status, title)
    assert api.get(f"/lists/{LIST}").status_code == 200  # only one was queued
    assert emu.requests[-2].fault == kind and emu.faults.injected[kind] == 1


@pytest.mark.parametrize("kind,status", [("403", 403), ("429-bare", 429)])
def test_bodiless_faults(api, emu, kind, status):
    emu.faults.queue(kind)
    r = api.get(f"/lists/{LIST}")
    assert r.status_code == status and r.content == b""
    assert "Content-Type" not in r.headers


def test_dropped_connection_and_slow_response(api, emu):
    emu.faults.queue("drop")
    with pytest.raises(requests.ConnectionError):
        api.get(f"/lists/{LIST}")
    assert emu.requests[-1].status == 0 and emu.requests[-1].fault == "drop"
    assert api.get(f"/lists/{LIST}").status_code == 200  # the client reconnects
    emu.faults.configure(slow_seconds=0.2)
    emu.faults.queue("slow")
    assert api.get(f"/lists/{LIST}").status_code == 200
    assert emu.faults.injected["slow"] == 1


def test_ping_is_exempt_from_faults_unless_asked(api, emu):
    emu.faults.configure(rate_5xx=1.0)
    assert api.get("/ping").status_code == 200
    assert api.get(f"/lists/{LIST}").status_code in (500, 503)
    emu.faults.include_ping = True
    assert api.get("/ping").status_code in (500, 503)


def test_faults_are_deterministic_with_a_seed(server, emu):
    def run() -> list[int]:
        emu.faults.seed(42)
        emu.faults.configure(rate_429=0.2, rate_5xx=0.2, rate_403=0.1)
        with requests.Session() as s:
            s.auth = ("u", KEY)
            return [s.get(server.base_url + f"/lists/{LIST}", timeout=10).status_code
                    for _ in range(40)]

    first, second = run(), run()
    assert first == second
    assert {200, 429, 403} <= set(first) and set(first) & {500, 503}


def test_faults_can_target_paths(api, emu):
    emu.faults.configure(rate_5xx=1.0, match=lambda method, path: path.endswith("/members"))
    assert api.get(f"/lists/{LIST}").status_code == 200
    assert api.get(members_path()).status_code in (500, 503)


# --- recording, hooks, scale -----------------------------------------------------------------------

def test_requests_are_recorded(api, emu):
    api.put(members_path("rec@example.org"), params={"skip_merge_validation": "true"},
            json={"email_address": "rec@example.org", "status_if_new": "subscribed"})
    rec = emu.requests[-1]
    assert rec.method == "PUT" and rec["path"] == f"/3.0/lists/{LIST}/members/rec@example.org"
    assert rec.query == {"skip_merge_validation": "true"}
    assert rec.body == {"email_address": "rec@example.org", "status_if_new": "subscribed"}
    assert rec.status == 200 and rec.response["email_address"] == "rec@example.org"
    emu.record_bodies = False
    api.get(members_path())
    assert emu.requests[-1].body is None and emu.requests[-1].response is None
    assert emu.requests[-1].status == 200


def test_on_members_page_hook_edits_during_a_snapshot(api, emu):
    _load(emu, 30)
    calls = []

    def hook(e, list_id, offset):
        calls.append(offset)
        if offset == 10:
            e.update_member(list_id, "m00000@example.org", status="unsubscribed")

    emu.on_members_page = hook
    got = []
    for offset in (0, 10, 20):
        page = api.get(members_path(), params={"count": 10, "offset": offset,
                                               "sort_field": "last_changed", "sort_dir": "ASC"})
        got += [m["email_address"] for m in page.json()["members"]]
    assert calls == [0, 10, 20]
    # The edited member moved to the end of the last_changed order, so an offset
    # pager sees it twice and skips nothing but m00010, which shifted to offset 9.
    assert got.count("m00000@example.org") == 2 and "m00010@example.org" not in got
    assert emu.get_member(LIST, "m00000@example.org")["status"] == "unsubscribed"


def test_view_cache_stays_correct_under_random_writes(emu):
    """Cached, patched views agree with a brute-force filter+sort after every write."""
    from civimc_sandbox.emulator.api import _members_query
    from civimc_sandbox.emulator.views import _keyfn, _matcher

    rng = random.Random(7)
    statuses = ["subscribed", "unsubscribed", "cleaned", "pending", "archived", "transactional"]
    emu.load_members(LIST, ({"email_address": f"u{i}@example.org", "status": rng.choice(statuses),
                             "last_changed": 1_700_000_000 + rng.randrange(500)}
                            for i in range(1500)))
    now = [1_700_000_300]
    emu.clock = lambda: now[0]
    queries = [{"status": "subscribed"}, {"sort_field": "last_changed"},
               {"sort_field": "last_changed", "sort_dir": "DESC", "status": "pending"},
               {"since_last_changed": "2023-11-14T22:17:00Z"},
               {"sort_field": "timestamp_opt", "sort_dir": "DESC"}]
    lst = emu.lists[LIST]
    for step in range(150):
        for _ in range(rng.randrange(4)):
            now[0] += rng.randrange(3)
            e = f"u{rng.randrange(1600)}@example.org"
            op = rng.random()
            if op < 0.4:
                emu.dispatch("PUT", f"/lists/{LIST}/members/{e}", {}, {
                    "email_address": e, "status_if_new": "subscribed",
                    "status": rng.choice(["pending", "unsubscribed", "subscribed"])})
            elif op < 0.6:
                emu.dispatch("DELETE", f"/lists/{LIST}/members/{e}")
            elif op < 0.7:
                emu.dispatch("POST", f"/lists/{LIST}/members/{e}/actions/delete-permanent")
            else:
                emu.dispatch("POST", f"/lists/{LIST}/members", {}, {
                    "email_address": f"n{step}_{_}@example.org", "status": "subscribed"})
        q = rng.choice(queries)
        r = emu.dispatch("GET", f"/lists/{LIST}/members", {**q, "count": "1000",
                                                           "fields": "members.id,total_items"})
        query = _members_query(q)
        match, key = _matcher(query), _keyfn(query)
        expected = [rec for rec in lst.order if match(rec)]
        if query.sort_field:
            expected.sort(key=key)
        assert r.body["total_items"] == len(expected)
        assert [m["id"] for m in r.body["members"]] == [rec.id for rec in expected[:1000]]
    assert lst.views.patches > lst.views.rebuilds


def test_two_hundred_thousand_members_page_through(api, emu):
    n = 200_000
    emu.record_bodies = False
    statuses = ["subscribed", "unsubscribed", "cleaned", "pending", "archived", "transactional"]
    assert emu.load_members(LIST, ({"email_address": f"big{i}@example.org",
                                    "status": statuses[i % 6],
                                    "last_changed": "2026-01-02T03:04:05Z",
                                    "merge_fields": {"FNAME": "B", "LNAME": str(i)}}
                                   for i in range(n))) == n
    seen = set()
    offset = 0
    total = None
    while total is None or offset < total:
        page = api.get(members_path(), params={
            "count": 1000, "offset": offset,
            "fields": "members.id,members.status,members.last_changed,total_items"}).json()
        total = page["total_items"]
        seen.update(m["id"] for m in page["members"])
        offset += 1000
    assert total == n and len(seen) == n
    full = api.get(members_path(), params={"count": 1000, "offset": n - 500}).json()
    assert len(full["members"]) == 500 and full["members"][-1]["email_address"] == f"big{n - 1}@example.org"


# --- CLI ------------------------------------------------------------------------------------------

def test_cli_serves_members_from_a_file(tmp_path):
    members = [{"email_address": "cli@example.org", "status": "subscribed",
                "last_changed": "2026-01-05T09:30:00+00:00", "merge_fields": {"FNAME": "C"}}]
    path = tmp_path / "members.json"
    path.write_text(json.dumps(members))
    proc = subprocess.Popen([sys.executable, "-m", "civimc_sandbox.emulator", "--port", "0",
                             "--list-id", "c1c2c3c4c5", "--api-key", KEY, "--members", str(path)],
                            stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        line = proc.stdout.readline()
        base = line.strip().rsplit(" ", 1)[-1]
        assert base.startswith("http://127.0.0.1:") and base.endswith("/3.0"), line
        body = requests.get(base + "/lists/c1c2c3c4c5/members", auth=("u", KEY), timeout=10).json()
        assert body["total_items"] == 1 and body["members"][0]["merge_fields"]["FNAME"] == "C"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_choices_are_documented():
    assert "archived" in EMULATOR_CHOICES and "clamped" in EMULATOR_CHOICES


# --- spec checking of live traffic ---------------------------------------------------------------

def test_spec_checker_reports_and_can_reject_bad_requests(api, emu):
    checker = emu.spec_checker
    api.get(members_path(), params={"count": 5, "status": "subscribed", "sort_field": "last_changed"})
    api.put(members_path("ok@example.org"), json={"status": "subscribed"})  # relaxed: existing-style
    assert [v for v in checker.violations if v["kind"] == "request"] == []
    api.get(members_path(), params={"stauts": "subscribed"})
    api.post(members_path(), json={"email_address": "typo@example.org", "status": "subscribed",
                                   "merge_feilds": {"FNAME": "T"}})
    messages = [v["message"] for v in checker.violations if v["kind"] == "request"]
    assert any("stauts" in m for m in messages)
    assert any("merge_feilds" in m for m in messages)
    checker.mode = "reject"
    doc = assert_problem(api.post(members_path(), json={"email_address": "t2@example.org",
                                                        "status": "subscribed", "vip": "yes"}),
                         400, "Invalid Resource")
    assert "vip" in doc["errors"][0]["message"]
    assert emu.get_member(LIST, "t2@example.org") is None
