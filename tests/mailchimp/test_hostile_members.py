"""Issue 19 point 4, the Mailchimp side: broken or hostile answers reach the store intact or
end in a clear error — a member's row is never dropped, a snapshot never crashes."""

from __future__ import annotations

import copy

import pytest
from support.mc_env import LIST, OLD, mc_env

from civimc_audit.errors import MailchimpError
from civimc_audit.mailchimp.reader import snapshot_mailchimp


@pytest.fixture
def mc(tmp_path, monkeypatch):
    yield from mc_env(tmp_path, monkeypatch)


def take(mc, store):
    client = mc.client(retries=3)
    return snapshot_mailchimp(client.settings, store, client=client)


def rows(store, snap_id) -> dict:
    return {r[0]: r[1:] for r in store.con.execute(
        "SELECT email_address, status, last_changed FROM mailchimp_member WHERE snapshot_id = ?",
        [snap_id]).fetchall()}


def rewrite_member(email: str, change):
    """An on_members_body hook applying `change(member)` to the member with `email`."""
    def hook(list_id, offset, body):
        for m in body.get("members") or []:
            if m.get("email_address") == email:
                change(m)
        return body
    return hook


@pytest.mark.parametrize("n", [5, 1500])  # one page (decoded) and several (cut, spooled)
@pytest.mark.parametrize("broken", ["empty", "missing", "garbage", "null"])
def test_a_member_with_a_broken_last_changed_is_stored_without_it(mc, n, broken):
    mc.load(n)
    target = "m3@example.org"

    def change(m):
        if broken == "missing":
            m.pop("last_changed", None)
        else:
            m["last_changed"] = {"empty": "", "garbage": "yesterday+00:00", "null": None}[broken]

    mc.emu.on_members_body = rewrite_member(target, change)
    mc.spec_items = 1  # the spec check would refuse the member we broke on purpose
    store = mc.store()
    snap = take(mc, store)
    assert snap.status == "complete", snap.message
    got = rows(store, snap.id)
    assert len(got) == n
    assert got[target][1] is None
    assert got["m4@example.org"][1] is not None
    assert snap.meta["odd_members"] == {"without a usable last_changed": 1}


@pytest.mark.parametrize("n", [5, 1500])
def test_an_unknown_status_is_kept_as_sent(mc, n):
    mc.load(n)
    mc.emu.on_members_body = rewrite_member("m2@example.org",
                                            lambda m: m.update(status="frozen<b>"))
    mc.spec_items = 1
    store = mc.store()
    snap = take(mc, store)
    assert snap.status == "complete", snap.message
    got = rows(store, snap.id)
    assert len(got) == n and got["m2@example.org"][0] == "frozen<b>"
    assert snap.meta["odd_members"] == {"with an unknown status": 1}


@pytest.mark.parametrize("always", [False, True])
def test_the_same_member_twice_in_a_page_is_stored_once(mc, always):
    """Served once, the member it hid is found again; served on every read, the snapshot says
    it is incomplete (never complete with someone missing)."""
    mc.load(1500)
    served = {"n": 0}

    def twice(list_id, offset, body):
        ms = body.get("members")
        if ms and offset == 0 and len(ms) > 10 and (always or not served["n"]):
            served["n"] += 1
            ms[5] = copy.deepcopy(ms[4])  # m5 not served on this page, m4 twice
        return body

    mc.emu.on_members_body = twice
    store = mc.store()
    snap = take(mc, store)
    got = rows(store, snap.id)
    assert store.con.execute("SELECT count(*) FROM mailchimp_member WHERE snapshot_id = ?"
                             " AND email_address = 'm4@example.org'", [snap.id]).fetchone()[0] == 1
    if always:
        assert snap.status == "incomplete"
        assert "1499 members but the audience reports 1500" in snap.message
    else:
        assert snap.status == "complete", snap.message
        assert len(got) == 1500


def test_a_page_shorter_than_its_neighbours_claim_is_noticed_and_repaired(mc):
    mc.load(2500)
    served = {"short": 0}

    def short(list_id, offset, body):
        ms = body.get("members")
        if offset == 999 and ms and not served["short"]:
            served["short"] += 1
            del ms[100:400]  # 300 members missing from a page whose total says 2500
        return body

    mc.emu.on_members_body = short
    store = mc.store()
    snap = take(mc, store)
    assert served["short"] == 1
    assert snap.status == "complete", snap.message
    assert len(rows(store, snap.id)) == 2500


def test_a_page_always_short_ends_incomplete_never_complete(mc):
    mc.load(2500)

    def short(list_id, offset, body):
        ms = body.get("members")
        if offset == 999 and ms and len(ms) > 400:
            del ms[100:400]
        body["total_items"] = 2500
        return body

    mc.emu.on_members_body = short
    store = mc.store()
    snap = take(mc, store)
    assert snap.status in ("complete", "incomplete")
    if snap.status == "complete":  # the repair fetched the missing ones one by one
        assert len(rows(store, snap.id)) == 2500


@pytest.mark.parametrize("times, ok", [(2, True), (10, False)])
def test_a_200_with_a_cut_json_body_is_retried_then_a_clear_error(mc, times, ok):
    mc.load(1500)
    mc.emu.faults.match = lambda method, path: path.endswith("/members")
    mc.emu.faults.queue("garbled", times)
    store = mc.store()
    if ok:
        snap = take(mc, store)
        assert snap.status == "complete", snap.message
        assert len(rows(store, snap.id)) == 1500
        return
    with pytest.raises(MailchimpError, match="not whole JSON") as caught:
        take(mc, store)
    assert "\n" not in str(caught.value)
    (status,) = store.con.execute("SELECT status FROM snapshots").fetchone()
    assert status == "failed"


def test_a_garbled_audience_answer_is_retried(mc):
    mc.load(3)
    mc.emu.faults.match = lambda method, path: path.rstrip("/") == f"/lists/{LIST}"
    mc.emu.faults.queue("garbled", 1)
    store = mc.store()
    snap = take(mc, store)
    assert snap.status == "complete" and len(rows(store, snap.id)) == 3
    assert OLD  # the members' times are the loaded ones


@pytest.mark.parametrize("n", [5, 1500])
@pytest.mark.parametrize("field", ["id", "email_address"])
def test_a_member_without_its_id_or_address_is_stored_or_reported_never_a_crash(mc, n, field):
    mc.load(n)
    mc.emu.on_members_body = rewrite_member("m3@example.org", lambda m: m.pop(field, None))
    mc.spec_items = 1
    store = mc.store()
    snap = take(mc, store)
    count = store.con.execute("SELECT count(*) FROM mailchimp_member WHERE snapshot_id = ?",
                              [snap.id]).fetchone()[0]
    if snap.status == "complete":
        assert count == n  # the member reached the store, without what it lacked
    else:
        assert snap.status == "incomplete" and snap.message


def test_snapshot_says_how_many_members_came_broken(civi_db, emulator, make_config, run_cli):
    from support.values import TEST_LIST_ID

    for n in range(3):
        emulator.add_member(TEST_LIST_ID, f"x{n}@example.org", last_changed=OLD)
    emulator.on_members_body = rewrite_member("x1@example.org",
                                              lambda m: m.update(last_changed=""))
    code, out, err = run_cli("--config", make_config(), "snapshot", "--mailchimp-only")
    assert code == 0, err
    assert "member=3" in out and "; members 1 without a usable last_changed" in out
