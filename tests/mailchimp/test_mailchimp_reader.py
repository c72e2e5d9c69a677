"""Snapshots of a Mailchimp audience from the emulator over HTTP: complete, de-duplicated,
re-read while members change, incremental, and identical under injected faults."""

from __future__ import annotations

import math

import orjson
import pytest
from support.mc_env import LIST, OLD, STATUSES, emulator_state, mc_env, snapshot_state

from civimc_audit.config import MailchimpSettings
from civimc_audit.mailchimp.reader import MEMBER_FIELDS, snapshot_mailchimp


@pytest.fixture
def mc(tmp_path, monkeypatch):
    yield from mc_env(tmp_path, monkeypatch)


TRIMMED = ",".join(["total_items"] + [f"members.{f}" for f in MEMBER_FIELDS])


def take(mc, store=None, *, incremental=False, **kw):
    client = mc.client(**kw)
    return snapshot_mailchimp(client.settings, store or mc.store(), client=client,
                              incremental=incremental)


def test_snapshot_reads_every_status_in_trimmed_pages_of_1000(mc):
    mc.load(2500)
    store = mc.store()
    snap = take(mc, store)
    assert snap.status == "complete", snap.message
    assert snapshot_state(store, snap.id) == emulator_state(mc.emu)
    assert {s for _, s, _, _ in snapshot_state(store, snap.id).values()} == set(STATUSES)
    row = store.con.execute("SELECT merge_fields->>'$.FNAME', merge_fields->>'$.LNAME'"
                            " FROM mailchimp_member WHERE email_address = 'm1@example.org'"
                            ).fetchone()
    assert row == ("F1", "L1")
    pages = [r for r in mc.member_requests() if "since_last_changed" not in r.query]
    assert sorted(int(r.query["offset"]) for r in pages) == [0, 999, 1998]  # 1 overlap
    assert all(r.query["count"] == "1000" and r.query["fields"] == TRIMMED for r in pages)
    # Cost: the audience, ceil(N/1000) pages, one completeness re-read, and the interest
    # catalogue (one read of the categories; this audience has none) — nothing else.
    assert len(mc.emu.requests) == 1 + math.ceil(2500 / 1000) + 1 + 1
    assert snap.meta["requests"] == len(mc.emu.requests)
    rereads = [r for r in mc.member_requests() if "since_last_changed" in r.query]
    assert len(rereads) == 1 and rereads[0].query["sort_dir"] == "DESC"


def test_pages_are_read_concurrently_within_the_configured_limit(mc):
    mc.load(6000)
    mc.emu.faults.configure(rate_slow=1.0, slow_seconds=0.2,
                            match=lambda method, path: path.endswith("/members"))
    snap = take(mc, max_connections=3)
    assert snap.status == "complete"
    assert mc.emu.peak_inflight == 3
    assert not any(r.status == 429 for r in mc.emu.requests)


def test_max_connections_is_capped_at_ten():
    from civimc_audit.config import config_from_dict
    from civimc_audit.errors import ConfigError

    with pytest.raises(ConfigError, match="between 1 and 10"):
        config_from_dict({"civicrm": {"group_id": 1},
                          "mailchimp": {"list_id": "x", "max_connections": 11}})
    assert MailchimpSettings().max_connections == 5


def test_archived_members_are_read_separately_when_the_listing_leaves_them_out(mc):
    mc.load(1500)
    mc.emu.archived_in_default_listing = False
    store = mc.store()
    snap = take(mc, store)
    assert snap.status == "complete", snap.message
    assert snap.meta["archived_listed_separately"] is True
    assert snapshot_state(store, snap.id) == emulator_state(mc.emu)
    assert any(r.query.get("status") == "archived" for r in mc.member_requests())


@pytest.mark.parametrize("connections", [1, 5])
def test_members_changed_while_the_snapshot_runs_are_read_again(mc, connections):
    mc.load(5000)
    emu = mc.emu
    done = set()

    def edit(e, list_id, offset):
        if offset > 2500 and "edits" not in done:
            done.add("edits")
            e.update_member(LIST, "m10@example.org", status="unsubscribed")   # already read
            e.update_member(LIST, "m20@example.org", merge_fields={"FNAME": "Renamed"})
            e.update_member(LIST, "m30@example.org", email_address="m30-new@example.org")
            e.delete_member(LIST, "m40@example.org")                         # archived
            e.delete_member(LIST, "m4500@example.org", permanent=True)       # unread: shifts
            e.delete_member(LIST, "m50@example.org", permanent=True)         # read: gone now
            e.add_member(LIST, "late@example.org", status="subscribed")

    emu.on_members_page = edit
    store = mc.store()
    snap = take(mc, store, max_connections=connections)
    assert "edits" in done
    assert snap.status == "complete", snap.message
    got = snapshot_state(store, snap.id)
    want = emulator_state(emu)
    assert {k: got.get(k) for k in got.keys() ^ want.keys() | {
        k for k in got.keys() & want.keys() if got[k] != want[k]}} == {}, snap.meta
    assert got[_h("m10@example.org")][1] == "unsubscribed"
    assert got[_h("m30-new@example.org")][0] == "m30-new@example.org"
    assert _h("m30@example.org") not in got and _h("m50@example.org") not in got
    assert snap.meta["repaired"] is True  # the permanent deletions needed the id-only pass


def test_updates_and_additions_during_the_run_are_patched_in_without_a_repair(mc):
    mc.load(4000)
    done = []

    def edit(e, list_id, offset):
        if offset > 1500 and not done:
            done.append(offset)
            e.update_member(LIST, "m3@example.org", status="unsubscribed")
            e.update_member(LIST, "m4@example.org", email_address="m4-renamed@example.org")
            e.delete_member(LIST, "m5@example.org")  # archive: stays in the listing
            for i in range(3):
                e.add_member(LIST, f"extra{i}@example.org", status="pending")

    mc.emu.on_members_page = edit
    store = mc.store()
    snap = take(mc, store)
    assert done and snap.status == "complete", snap.message
    assert not snap.meta["shifted"] and not snap.meta["repaired"]
    assert snapshot_state(store, snap.id) == emulator_state(mc.emu)
    assert snap.meta["rounds"] == 2  # one round with changes, one to see nothing new


def test_a_snapshot_that_cannot_be_completed_is_stored_incomplete_and_refused(mc):
    mc.load(1200)
    n = iter(range(10**6))

    def churn(e, list_id, offset):  # some member changes before every page, forever
        e.update_member(LIST, f"m{next(n) % 1200}@example.org",
                        merge_fields={"FNAME": "again"})

    mc.emu.on_members_page = churn
    store = mc.store()
    snap = take(mc, store)
    assert snap.status == "incomplete" and "kept changing" in snap.message
    assert store.latest_snapshot("mailchimp") is None
    assert snap.row_counts["mailchimp_member"] > 0  # kept for inspection, never reconciled


def test_cli_reports_an_incomplete_snapshot_and_reconcile_refuses_it(
        civi_db, emulator, make_config, run_cli):
    from support.values import TEST_LIST_ID

    emulator.load_members(TEST_LIST_ID, ({"email_address": f"c{i}@example.org",
                                          "status": "subscribed", "last_changed": OLD}
                                         for i in range(1500)))
    n = iter(range(10**6))
    emulator.on_members_page = lambda e, list_id, offset: e.update_member(
        TEST_LIST_ID, "c1@example.org", merge_fields={"FNAME": str(next(n))})
    config = make_config()
    code, out, err = run_cli("--config", config, "snapshot")
    assert code == 3, (out, err)
    assert len(err.strip().splitlines()) == 1 and "is incomplete" in err
    mc_id = int(out.split("mailchimp snapshot ")[1].split()[0])
    code, out, err = run_cli("--config", config, "reconcile", "--mailchimp-snapshot", mc_id)
    assert code == 2 and f"mailchimp snapshot {mc_id} is incomplete" in err
    emulator.on_members_page = None
    code, out, err = run_cli("--config", config, "snapshot", "--mailchimp-only", "--incremental")
    assert code == 0, err
    code, out, err = run_cli("--config", config, "reconcile")
    assert code == 0, err


@pytest.mark.parametrize("stage", ["full pass", "re-read"])
def test_ctrl_c_while_duckdb_loads_fails_the_snapshot_cleanly(mc, monkeypatch, stage):
    """Ctrl-C while the main thread waits for a load: the load is interrupted, its transaction
    rolled back, the snapshot marked failed with no rows, and the store works on."""
    import os
    import signal
    import threading

    from civimc_audit.mailchimp import reader

    mc.load(3000)
    name = "_PASS_SQL" if stage == "full pass" else "_LOAD_SQL"
    sql = getattr(reader, name)
    slow = sql + " WHERE (SELECT count(*) FROM range(1000000000000)) > 0"  # hours of counting
    monkeypatch.setattr(reader, name, slow)
    if stage == "re-read":
        mc.emu.on_members_page = lambda e, list_id, offset: e.update_member(
            LIST, "m1@example.org", status="unsubscribed") if offset == 0 else None
    timers = []
    close = reader.Spool.close

    def close_then_ctrl_c(spool, load=True):
        """Ctrl-C half a second into waiting for the slow load."""
        if spool.sql == slow and not timers:
            timers.append(threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)))
            timers[0].start()
        close(spool, load)

    monkeypatch.setattr(reader.Spool, "close", close_then_ctrl_c)
    store = mc.store()
    threads = store.con.execute("SELECT current_setting('threads')").fetchone()
    try:
        with pytest.raises(KeyboardInterrupt):
            take(mc, store)
    finally:
        for timer in timers:
            timer.cancel()
    assert timers  # the signal came while a slow load was being waited for
    assert store.con.execute("SELECT status FROM snapshots").fetchall() == [("failed",)]
    assert store.con.execute("SELECT count(*) FROM mailchimp_member").fetchone() == (0,)
    assert store.con.execute("SELECT current_setting('threads')").fetchone() == threads
    monkeypatch.setattr(reader, name, sql)
    monkeypatch.setattr(reader.Spool, "close", close)
    mc.emu.on_members_page = None
    assert take(mc, store).status == "complete"


def test_incremental_snapshot_reads_only_changes_and_is_complete(mc):
    mc.load(4000)
    store = mc.store()
    first = take(mc, store)
    assert first.status == "complete"
    e = mc.emu
    e.update_member(LIST, "m1@example.org", status="unsubscribed")
    e.update_member(LIST, "m2@example.org", email_address="m2-moved@example.org")
    e.delete_member(LIST, "m3@example.org")
    e.delete_member(LIST, "m5@example.org", permanent=True)
    for i in range(1500):
        e.add_member(LIST, f"new{i}@example.org", status="subscribed")
    e.clear_requests()
    second = take(mc, store, incremental=True)
    assert second.status == "complete", second.message
    assert second.meta["mode"] == "incremental" and second.meta["base_snapshot_id"] == first.id
    assert snapshot_state(store, second.id) == emulator_state(e)
    pages = [r for r in mc.member_requests() if "since_last_changed" in r.query]
    assert pages and all(r.query["since_last_changed"] < "2100" for r in pages)
    full_pages = [r for r in mc.member_requests()
                  if "since_last_changed" not in r.query and r.query.get("count") == "1000"
                  and r.query["fields"] == TRIMMED]
    assert full_pages == []  # no full pass ...
    # ... but one id-only pass found the permanently deleted member
    assert second.meta["repaired"] is True
    # the first snapshot is untouched
    assert len(snapshot_state(store, first.id)) == 4000


def test_incremental_without_changes_costs_a_few_requests(mc):
    mc.load(3000)
    store = mc.store()
    take(mc, store)
    mc.emu.clear_requests()
    snap = take(mc, store, incremental=True)
    assert snap.status == "complete" and snap.meta["rows_read"] == 0
    assert len(mc.emu.requests) == 4  # the audience, the change read, the count, the catalogue
    assert len(snapshot_state(store, snap.id)) == 3000


def test_incremental_with_no_previous_snapshot_takes_a_full_one(mc):
    mc.load(10)
    snap = take(mc, incremental=True)
    assert snap.status == "complete" and snap.meta["mode"] == "full"


def test_fault_injected_snapshot_is_complete_and_identical(mc):
    """Point 10: 20% of requests fail in every way of point 7; 50,000 members."""
    mc.spec_items = 20
    mc.load(50_000)
    store = mc.store()
    clean = take(mc, store)
    assert clean.status == "complete"
    f = mc.emu.faults
    f.seed(7)
    f.configure(rate_429=0.03, rate_429_bare=0.02, rate_5xx=0.05, rate_403=0.03,
                rate_drop=0.02, rate_cut=0.04, rate_slow=0.02, slow_seconds=1.5)
    mc.emu.clear_requests()
    faulty = take(mc, store, timeout=0.75, retries=8)
    assert faulty.status == "complete", faulty.message
    diff = store.con.execute("""
        SELECT count(*) FROM (
          (SELECT * EXCLUDE (snapshot_id) FROM mailchimp_member WHERE snapshot_id = $a
           EXCEPT ALL SELECT * EXCLUDE (snapshot_id) FROM mailchimp_member WHERE snapshot_id = $b)
          UNION ALL
          (SELECT * EXCLUDE (snapshot_id) FROM mailchimp_member WHERE snapshot_id = $b
           EXCEPT ALL SELECT * EXCLUDE (snapshot_id) FROM mailchimp_member WHERE snapshot_id = $a))
    """, {"a": clean.id, "b": faulty.id}).fetchone()[0]
    assert diff == 0
    assert store.con.execute("SELECT count(*) FROM mailchimp_member WHERE snapshot_id = ?",
                             [faulty.id]).fetchone()[0] == 50_000
    injected = f.injected
    assert {"429", "429-bare", "403", "drop", "cut", "slow"} <= set(injected) and (
        injected["500"] + injected["503"]) > 0, injected
    failed = sum(1 for r in mc.emu.requests if r.fault and r.fault != "slow") + injected["slow"]
    assert failed / len(mc.emu.requests) > 0.1


def _h(email):
    from civimc_audit.mailchimp.client import member_hash
    return member_hash(email)


def _raw_pages(n: int, total: int = 4321):
    """One page of `n` members as Mailchimp's compact JSON, pretty-printed, and with the keys
    in another order; names hold quotes and a member boundary lookalike."""
    import json

    members = [{"id": f"{i:032x}", "email_address": f"p{i}@example.org", "status": "subscribed",
                "last_changed": "2026-01-02T03:04:05+00:00", "unique_email_id": "u",
                "contact_id": f"{i:032x}", "timestamp_opt": "",
                "merge_fields": {"FNAME": 'A "quoted" \\"id\\":\\"x\\"', "LNAME": '},{"id":"z',
                                 "ADDRESS": {"city": "C"}}}
               for i in range(n)]
    page = {"members": members, "total_items": total}
    reordered = {"total_items": total,
                 "members": [dict(reversed(list(m.items()))) for m in members]}
    return (json.dumps(page, separators=(",", ":")).encode(), json.dumps(page, indent=2).encode(),
            json.dumps(reordered, separators=(",", ":")).encode())


def test_raw_pages_are_cut_down_to_their_members_whatever_their_layout():
    """Compact pages are cut without decoding; pretty or reordered ones are decoded; all give
    the same members, ids at the page edges and count; a later page's overlap is left out.
    Full pages before the last, and last pages of every length."""
    from civimc_audit.mailchimp.reader import PAGE_SIZE, STRIDE, split_page

    for offset in (0, STRIDE):
        for n, total in ((PAGE_SIZE, 4321), (PAGE_SIZE, offset + PAGE_SIZE), (3, offset + 3),
                         (1, offset + 1)):
            compact, pretty, reordered = _raw_pages(n, total)
            pages = [split_page(raw, offset) for raw in (compact, pretty, reordered)]
            want = orjson.loads(compact)["members"][1 if offset else 0:]
            for page in pages:
                assert (page.total, page.first, page.n) == (total, f"{0:032x}", n)
                assert page.at_stride == (f"{STRIDE:032x}" if n > STRIDE else None)
                assert orjson.loads(b"[" + page.members + b"]") == want
    empty = split_page(b'{"members":[],"total_items":0}', 0)
    assert (empty.total, empty.n, empty.first, empty.members) == (0, 0, None, b"")


def test_pages_that_only_look_compact_are_decoded_not_cut():
    """Layouts the fast cut must not take: spaces between members, a merge value that is
    exactly "id" on a counted last page, more after the array. Each gives the same members as
    the decoded page; a cut-off body fails instead of losing members."""
    import json

    from civimc_audit.mailchimp.reader import STRIDE, split_page

    members = [{"id": f"{i:032x}", "email_address": f"p{i}@example.org", "status": "subscribed",
                "merge_fields": {"FNAME": "id" if i == 7 else f"F{i}"}}
               for i in range(STRIDE + 1)]
    compact = json.dumps({"members": members, "total_items": 5000}, separators=(",", ":"))
    spaced = compact.replace('},{"id":"', '}, {"id":"')
    last = compact.replace('"total_items":5000', f'"total_items":{STRIDE + len(members)}')
    plain = [m for i, m in enumerate(members) if i != 7]
    plain_page = json.dumps({"members": plain, "total_items": 5000}, separators=(",", ":"))
    linked = plain_page[:-1] + ',"_links":[{"rel":"self"}]}'
    for raw, want in ((spaced, members), (last, members), (compact, members),
                      (linked, plain)):
        page = split_page(raw.encode(), STRIDE)
        assert (page.n, page.first) == (len(want), want[0]["id"])
        assert orjson.loads(b"[" + page.members + b"]") == [
            {k: m[k] for k in ("id", "email_address", "status", "merge_fields")}
            for m in want[1:]]
    with pytest.raises(orjson.JSONDecodeError):
        split_page(plain_page[:-len(',"total_items":5000}')].encode(), 0)


@pytest.mark.parametrize("damage", ["short", "reordered", "long_and_short", "served_twice"])
def test_a_page_that_does_not_hold_what_its_cut_assumed_is_caught(mc, monkeypatch, damage):
    """A page before the last is cut as if it held 1000 members with ids first. When one holds
    fewer, or its second member's id is not its first key (the cut then takes two members
    off), the rows DuckDB loads fall short. A page holding 1001 (a member twice) can make up
    for a short one in that count, and an unstable order can serve one member twice and
    another never; the repeated id gives both away. Each time the pass counts as shifted and
    the snapshot is still complete and right."""
    from civimc_audit.mailchimp.reader import STRIDE, MemberPager

    mc.load(5000)
    get = MemberPager.get
    damaged_pages = set()

    def damaged(self, params):
        resp = get(self, params)
        offset = params.get("offset")
        if offset in (STRIDE, 2 * STRIDE) and offset not in damaged_pages:  # full pass only
            damaged_pages.add(offset)
            doc = orjson.loads(resp.content)
            members = doc["members"]
            if offset == STRIDE and damage in ("short", "long_and_short"):
                del members[500]
            elif offset == STRIDE and damage == "reordered":
                members[1] = dict(reversed(list(members[1].items())))
            elif offset == 2 * STRIDE and damage == "long_and_short":
                members.insert(500, members[400])
            elif offset == 2 * STRIDE and damage == "served_twice":
                members[500] = members[400]
            resp._content = orjson.dumps(doc)
        return resp

    monkeypatch.setattr(MemberPager, "get", damaged)
    store = mc.store()
    snap = take(mc, store)
    assert snap.status == "complete", snap.message
    assert snap.meta["shifted"] is True
    assert snapshot_state(store, snap.id) == emulator_state(mc.emu)
    assert snap.row_counts["mailchimp_member"] == 5000


def test_spooled_members_load_as_store_rows(tmp_path):
    from civimc_audit.mailchimp.reader import _LOAD_SQL, _TABLES, STRIDE, Spool, split_page
    from civimc_audit.store import Store

    compact, pretty, _ = _raw_pages(STRIDE + 2)
    with Store(tmp_path / "s.duckdb") as store:
        for sql in _TABLES:
            store.con.execute(sql)
        spool = Spool(str(tmp_path), 1, [store.con], _LOAD_SQL, {"r": 3})
        spool.write(split_page(pretty, 0).members)
        spool.write(split_page(compact, STRIDE).members)
        # Times in another offset than Mailchimp's +00:00 still become UTC.
        spool.write(b'{"id":"x","last_changed":"2026-01-02T05:04:05+02:00"},'
                    b'{"id":"y","last_changed":"2026-01-02T01:04:05.5-02:00"},'
                    b'{"id":"z","last_changed":""}')
        spool.close()
        rows = store.con.execute(
            "SELECT count(*), count(DISTINCT id), min(merge_fields->>'$.FNAME'),"
            " min(merge_fields->>'$.LNAME'), min(last_changed), min(r), max(r),"
            " max(last_changed) FILTER (id = 'x'), max(last_changed) FILTER (id = 'y'),"
            " count(last_changed) FILTER (id = 'z') FROM _mc_rows").fetchone()
    assert rows[:2] == (2 * STRIDE + 6, STRIDE + 5)
    assert rows[2].startswith('A "quoted"') and rows[3] == '},{"id":"z'
    assert str(rows[4]) == "2026-01-02 03:04:05" and rows[5:7] == (3, 3)
    assert [str(t) for t in rows[7:9]] == ["2026-01-02 03:04:05", "2026-01-02 03:04:05.500000"]
    assert rows[9] == 0  # '' is no time
