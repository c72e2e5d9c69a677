"""The emulator's cached page rendering gives byte-identical pages and never serves a stale
member; the Date header follows the emulator's clock."""

from __future__ import annotations

from email.utils import parsedate_to_datetime

import requests

from civimc_audit.emulator import Emulator, EmulatorServer

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
