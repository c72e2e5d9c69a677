"""Snapshots with interest groups: the Mailchimp snapshot keeps members' interests and the
audience's catalogue (for the catalogue reads only), incrementals carry interests, and the
CiviCRM snapshot keeps the mapped groups' rows in its one consistent read."""

from __future__ import annotations

import json

import pytest
from support.civicrm import settings_for
from support.mc_env import LIST, mc_env

from civimc_audit.civicrm.reader import snapshot_civicrm
from civimc_audit.errors import ConfigError
from civimc_audit.mailchimp.reader import snapshot_mailchimp
from civimc_audit.store import Store
from civimc_sandbox.emulator import member_hash


@pytest.fixture
def mc(tmp_path, monkeypatch):
    yield from mc_env(tmp_path, monkeypatch)


def _take(mc, store, incremental=False):
    client = mc.client()
    return snapshot_mailchimp(client.settings, store, client=client, incremental=incremental)


def _interests(store, snap_id):
    return {e: json.loads(i) for e, i in store.con.execute(
        "SELECT email_address, interests FROM mailchimp_member WHERE snapshot_id = ?",
        [snap_id]).fetchall()}


def test_members_interests_and_the_catalogue_cost_only_the_catalogue_reads(mc):
    mc.load(1500)
    plain = _take(mc, mc.store("plain.duckdb"))
    topics = mc.emu.add_interest_category(LIST, "Topics", [("9f8e7d6c5b", "Volunteering"),
                                                         ("1a2b3c4d5e", "Campaigns")])
    mc.emu.add_interest_category(LIST, "Region", [("00000000aa", "North")], type="radio")
    mc.emu.clock = lambda: "2025-06-01T00:00:00Z"  # an old change: no re-read round for it
    mc.emu.dispatch("PATCH", f"/lists/{LIST}/members/{member_hash('m1@example.org')}",
                    body={"interests": {"9f8e7d6c5b": True, "1a2b3c4d5e": False}})
    mc.emu.clock = None
    store = mc.store()
    snap = _take(mc, store)
    assert snap.status == "complete", snap.message
    # the categories once, then each category's interests: 1 + 2 more than without
    assert snap.meta["requests"] == plain.meta["requests"] + 2
    assert store.con.execute(
        "SELECT category_id, category_title, id, name FROM mailchimp_interest"
        " WHERE snapshot_id = ? ORDER BY category_title, name", [snap.id]).fetchall() == [
        (mc.emu.list_state(LIST).catalogue.categories[1]["id"], "Region", "00000000aa", "North"),
        (topics["id"], "Topics", "1a2b3c4d5e", "Campaigns"),
        (topics["id"], "Topics", "9f8e7d6c5b", "Volunteering")]
    got = _interests(store, snap.id)
    assert got["m1@example.org"] == {"9f8e7d6c5b": True, "1a2b3c4d5e": False}
    assert got["m2@example.org"] == {}  # joined before the interests existed: no entry
    assert snap.row_counts["mailchimp_interest"] == 3


def test_an_incremental_snapshot_carries_interest_changes(mc):
    mc.load(300)
    mc.emu.add_interest_category(LIST, "Topics", [("9f8e7d6c5b", "Volunteering")])
    store = mc.store()
    first = _take(mc, store)
    mc.emu.dispatch("PATCH", f"/lists/{LIST}/members/{member_hash('m3@example.org')}",
                    body={"interests": {"9f8e7d6c5b": True}})
    again = _take(mc, store, incremental=True)
    assert again.meta["mode"] == "incremental" and again.status == "complete"
    assert _interests(store, first.id)["m3@example.org"] == {}
    assert _interests(store, again.id)["m3@example.org"] == {"9f8e7d6c5b": True}
    assert again.row_counts["mailchimp_interest"] == 1


def test_civicrm_snapshot_keeps_every_mapped_groups_rows(civi_db, monkeypatch, tmp_path):
    f, g = civi_db.fixture, civi_db.group_id
    volunteers = f.group("volunteers", "Volunteers")
    other = f.group("other", "Not mapped")
    ann = f.contact("Ann", "Lee", email="ann@example.org")
    f.add_to_group(ann, g, "2025-01-01T00:00:00Z")
    f.add_to_group(ann, volunteers, "2025-01-02T00:00:00Z")
    f.remove_from_group(ann, volunteers, "2025-01-03T00:00:00Z")
    f.add_to_group(ann, other, "2025-01-04T00:00:00Z")
    f.commit()
    settings = settings_for(civi_db, monkeypatch)
    with Store(tmp_path / "a.duckdb") as store:
        snap = snapshot_civicrm(settings, store, transport="server",
                                interests={"9f8e7d6c5b": volunteers})
        assert snap.meta["interest_groups"] == [
            {"interest_id": "9f8e7d6c5b", "group_id": volunteers, "title": "Volunteers"}]
        rows = store.con.execute(
            "SELECT group_id, status FROM civicrm_group_contact WHERE snapshot_id = ?"
            " ORDER BY group_id", [snap.id]).fetchall()
        assert rows == [(g, "Added"), (volunteers, "Removed")]
        history = store.con.execute(
            "SELECT group_id, status, date FROM civicrm_subscription_history"
            " WHERE snapshot_id = ? AND group_id = ? ORDER BY id", [snap.id, volunteers]).fetchall()
        assert [(h[0], h[1], h[2].isoformat()) for h in history] == [
            (volunteers, "Added", "2025-01-02T00:00:00"),
            (volunteers, "Removed", "2025-01-03T00:00:00")]
        assert store.con.execute("SELECT count(*) FROM civicrm_subscription_history"
                                 " WHERE snapshot_id = ? AND group_id = ?",
                                 [snap.id, other]).fetchone()[0] == 0


def test_civicrm_snapshot_refuses_a_smart_mapped_group(civi_db, monkeypatch, tmp_path):
    smart = civi_db.fixture.group("smart", "Smart", saved_search_id=3)
    civi_db.fixture.commit()
    settings = settings_for(civi_db, monkeypatch)
    with Store(tmp_path / "a.duckdb") as store, pytest.raises(ConfigError, match="smart group"):
        snapshot_civicrm(settings, store, interests={"9f8e7d6c5b": smart})
    with Store(tmp_path / "a.duckdb") as store:
        assert store.latest_snapshot("civicrm") is None
