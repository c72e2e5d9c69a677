"""The emulator's cached page rendering gives byte-identical pages and never serves a stale
member; the Date header follows the emulator's clock."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import requests

from civimc_sandbox.emulator import Emulator, EmulatorServer

KEY = "0123456789abcdef0123456789abcdef-us1"
LIST = "cac4e00001"
FIELDS = "total_items,members.id,members.email_address,members.status,members.merge_fields"


def _page(s, base, **params):
    r = s.get(base + f"/lists/{LIST}/members", params={"count": 1000, "fields": FIELDS, **params},
              timeout=30)
    assert r.status_code == 200
    return r.content


def test_cached_pages_equal_fresh_ones_and_follow_every_change():
    emu = Emulator(api_key=KEY, clock=lambda: 1_800_000_000)
    emu.add_list(list_id=LIST, name="Cache")
    emu.load_members(LIST, ({"email_address": f"c{i}@example.org", "status": "subscribed",
                             "merge_fields": {"FNAME": str(i)}} for i in range(2500)))
    with EmulatorServer(emu) as server, requests.Session() as s:
        s.auth = ("u", KEY)
        first = [_page(s, server.base_url, offset=o) for o in (0, 1000, 2000)]
        assert [_page(s, server.base_url, offset=o) for o in (0, 1000, 2000)] == first
        emu.render_cache = False
        assert [_page(s, server.base_url, offset=o) for o in (0, 1000, 2000)] == first
        emu.render_cache = True
        emu.update_member(LIST, "c5@example.org", status="unsubscribed",
                          merge_fields={"FNAME": "Changed"})
        emu.dispatch("PUT", f"/lists/{LIST}/members/c6@example.org",
                     body={"status": "pending"})
        page = s.get(server.base_url + f"/lists/{LIST}/members",
                     params={"count": 10, "fields": FIELDS}, timeout=30).json()["members"]
        assert page[5]["status"] == "unsubscribed" and page[5]["merge_fields"]["FNAME"] == "Changed"
        assert page[6]["status"] == "pending"
        emu.load_members(LIST, [{"email_address": "c7@example.org", "status": "cleaned"}])
        assert s.get(server.base_url + f"/lists/{LIST}/members", params={
            "count": 10, "fields": FIELDS}, timeout=30).json()["members"][7]["status"] == "cleaned"
        # recorded responses are plain JSON even when served from the cache
        assert isinstance(emu.requests[-1].response["members"][0], dict)
        date = parsedate_to_datetime(s.get(server.base_url + "/ping", timeout=30).headers["Date"])
        assert date.timestamp() == 1_800_000_000


def test_since_last_changed_views_match_a_full_scan_through_changes():
    """`since_last_changed` queries bisect the members-by-last_changed view instead of scanning
    every member; through adds, edits, archives and permanent deletes (patched views) and bulk
    loads (rebuilt ones) they return exactly what filtering every member would, in order."""
    import random
    from datetime import UTC, datetime

    rng = random.Random(7)
    t0 = 1_800_000_000
    now = [t0]
    emu = Emulator(api_key=KEY, clock=lambda: now[0])
    emu.add_list(list_id=LIST, name="Since")

    def iso(t):
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")

    emu.load_members(LIST, ({"email_address": f"s{i}@example.org", "status": "subscribed",
                             "last_changed": iso(t0 - rng.randrange(500))} for i in range(600)))

    def listed(query):
        resp = emu.dispatch("GET", f"/lists/{LIST}/members",
                            {"count": "1000", "fields": "members.id", **query})
        return [m["id"] for m in resp.body["members"]]

    def expected(since, status=None, sort=None, desc=False):
        every = emu.members(LIST)  # insertion order
        t = datetime.fromisoformat(since).timestamp()
        keep = [m for m in every if datetime.fromisoformat(m["last_changed"]).timestamp() > t
                and (status is None or m["status"] == status)]
        if sort:
            keep.sort(key=lambda m: datetime.fromisoformat(m["last_changed"]).timestamp(),
                      reverse=desc)  # stable: ties stay in insertion order
            if desc:  # DESC orders ties by insertion order reversed too
                keep = [m for _, m in sorted(
                    enumerate(keep), key=lambda p: (-datetime.fromisoformat(
                        p[1]["last_changed"]).timestamp(), -every.index(p[1])))]
        return [m["id"] for m in keep]

    # A few times asked again and again, so their views are patched after each change, not
    # rebuilt; one with a fraction of a second.
    times = [iso(t0 - 100), iso(t0 - 300), iso(t0 - 520), iso(t0 - 5)[:-6] + ".5+00:00"]
    for step in range(60):
        now[0] += rng.randrange(3)
        email = f"s{rng.randrange(650)}@example.org"
        action = 4 if step % 20 == 10 else rng.randrange(4)
        try:
            if action == 0:
                emu.update_member(LIST, email, status=rng.choice(["unsubscribed", "subscribed"]))
            elif action == 1:
                emu.delete_member(LIST, email)
            elif action == 2:
                emu.delete_member(LIST, email, permanent=True)
            elif action == 3:
                emu.update_member(LIST, email, last_changed=iso(t0 - rng.randrange(500)))
            else:  # a bulk load: every view is rebuilt
                emu.load_members(LIST, [{"email_address": f"new{step}@example.org",
                                         "status": "pending"}])
        except KeyError:
            pass  # a member deleted earlier
        since = times[step % len(times)] if step % 3 else iso(t0 - rng.randrange(520))
        for query in ({}, {"status": "archived"}, {"sort_field": "last_changed"},
                      {"sort_field": "last_changed", "sort_dir": "DESC"}):
            got = listed({"since_last_changed": since, **query})
            want = expected(since, query.get("status"), query.get("sort_field"),
                            query.get("sort_dir") == "DESC")
            assert got == want, (step, query)
    cache = emu.list_state(LIST).views
    assert cache.patches > 50 and cache.rebuilds > 50
