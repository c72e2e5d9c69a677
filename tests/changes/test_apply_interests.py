"""Interest items (DESIGN "Interest groups") in plans and apply, through the real MariaDB and the
emulator: one item per interest change, approvable by interest, covered by the freeze hash;
applied, both systems agree afterwards (a fresh reconcile gives only no_change interest rows and
a second apply sends nothing); a change to an interest at either side between the snapshot and
apply makes its item stale."""

from __future__ import annotations

import csv
import io
import json

import pytest
from reconcile.test_interest_rules import CAMP, VOL, _mapping, _world
from support.apply import cli_ok
from support.values import TEST_LIST_ID

from civimc_audit.changes.plan import items_frame
from civimc_audit.config import load_config
from civimc_audit.store import Store


@pytest.fixture
def world(civi_db, emulator, make_config):
    mapping, expect = _world(civi_db, emulator)
    return mapping, expect, make_config(_mapping(mapping))


def _items(config, plan_id=None):
    with Store(load_config(config).store_file) as store:
        pid = plan_id or store.con.execute("SELECT max(id) FROM plans").fetchone()[0]
        return items_frame(store, pid)


def _interest_rows(run_cli, config):
    for cmd in (["snapshot"], ["reconcile"]):
        cli_ok(run_cli, config, *cmd)
    out = cli_ok(run_cli, config, "outcomes", "--interests", "--format", "json")
    return json.loads(out)


def _plan(run_cli, config):
    for cmd in (["snapshot"], ["reconcile"], ["plan"]):
        cli_ok(run_cli, config, *cmd)
    return _items(config)


def _contact_of(civi_db, email):
    civi_db.conn.commit()
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT contact_id FROM civicrm_email WHERE email = %s", (email,))
        return cur.fetchone()[0]


def _group_status(civi_db, email, group_id):
    civi_db.conn.commit()
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT g.status FROM civicrm_group_contact g JOIN civicrm_email e"
                    " ON e.contact_id = g.contact_id WHERE e.email = %s AND g.group_id = %s",
                    (email, group_id))
        row = cur.fetchone()
        return row and row[0]


def test_the_plan_has_one_item_per_interest_change(world, run_cli, tmp_path):
    mapping, expect, config = world
    items = _plan(run_cli, config)
    got = {(r["email"], r["interest_id"]): (r["outcome"], r["rule"], r["target"], r["action"])
           for r in items[items["interest_id"].notna()].to_dict("records")}
    want = {(e, i): o[:2] for e, rows in expect.items() for i, o in rows.items()
            if o[0] != "no_change"}
    assert {k: v[:2] for k, v in got.items()} == want
    actions = {v[0]: (v[2], v[3]) for v in got.values()}
    assert actions == {"add_to_civicrm_group": ("civicrm", "add_to_interest_group"),
                       "remove_from_civicrm_group": ("civicrm", "remove_from_interest_group"),
                       "set_interest_in_mailchimp": ("mailchimp", "set_interest"),
                       "clear_interest_in_mailchimp": ("mailchimp", "clear_interest")}
    row = items[(items["email"] == "civisets@example.org") & items["interest_id"].notna()].iloc[0]
    assert json.loads(row["payload"]) == {"email_address": "civisets@example.org",
                                          "interests": {VOL: True}}
    assert row["interest_name"] == "Volunteering" and row["civicrm_group_id"] == mapping[VOL]
    created = items[(items["email"] == "created@example.org") & items["interest_id"].notna()]
    assert json.loads(created.iloc[0]["payload"]) == {
        "contact_id": None, "group_id": mapping[VOL], "email": "created@example.org"}
    # Removals (of interests too) come first.
    assert items.iloc[0]["action"] in ("remove_from_interest_group", "clear_interest",
                                       "remove_from_group", "unsubscribe")
    out = cli_ok(run_cli, config, "plan", "--show")
    assert "interest items" in out
    doc = json.loads(cli_ok(run_cli, config, "plan", "--show", "--json"))
    assert doc["interest_items"] == len(got)
    assert doc["interest_removals"] == sum(1 for v in got.values() if v[3] in (
        "clear_interest", "remove_from_interest_group"))
    assert doc["removals"] == len(items[items["interest_id"].isna()
                                        & items["action"].isin(["remove_from_group",
                                                                "unsubscribe"])])
    # Approvable by interest (id or name); the CSV names the interest.
    out = cli_ok(run_cli, config, "approve", "--interest", "Volunteering", "--outcome",
                 "clear_interest_in_mailchimp", "--reviewer", "Ada")
    n = sum(1 for v in got.values() if v[0] == "clear_interest_in_mailchimp")
    assert f"{n} items approved" in out
    items = _items(config)
    approved = items[items["decision"] == "approved"]
    assert set(approved["interest_id"]) == {VOL}
    assert set(approved["action"]) == {"clear_interest"}
    path = tmp_path / "review.csv"
    cli_ok(run_cli, config, "review", "--export", path)
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert {"interest_id", "interest_name", "civicrm_group_id"} <= set(rows[0])
    assert any(r["interest_name"] == "Volunteering" for r in rows)
    # The CSV comes back in: its Volunteering rows approved, the rest withdrawn.
    for r in rows:
        r["decision"] = "approve" if r["interest_name"] == "Volunteering" else ""
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cli_ok(run_cli, config, "review", "--import", path, "--reviewer", "Bea")
    items = _items(config)
    assert set(items[items["decision"] == "approved"]["interest_name"]) == {"Volunteering"}


def test_the_freeze_hash_covers_interest_items_and_their_snapshot_state(world, run_cli):
    from civimc_audit.changes.plan import get_plan
    from civimc_audit.changes.review import plan_hash

    _, _, config = world
    items = _plan(run_cli, config)
    cli_ok(run_cli, config, "approve", "--interest", VOL, "--reviewer", "Ada")
    with Store(load_config(config).store_file) as store:
        plan = get_plan(store)
        before = plan_hash(store, plan)
        item = items[(items["interest_id"] == VOL) & (items["target"] == "mailchimp")].iloc[0]
        store.con.execute("UPDATE mailchimp_member SET interests = '{}' WHERE snapshot_id = ?"
                          " AND id = ?", [plan.mailchimp_snapshot_id, item["member_id"]])
        assert plan_hash(store, plan) != before
        store.con.execute("UPDATE plan_items SET interest_id = ? WHERE plan_id = ? AND"
                          " item_id = ?", [CAMP, plan.id, int(item["item_id"])])
        assert plan_hash(store, plan) != before


def test_standing_approvals_leave_interest_items_to_a_person(world, run_cli):
    from civimc_audit.changes.standing import approve_standing, counts_of

    _, _, config = world
    for cmd in (["snapshot"], ["reconcile"]):
        cli_ok(run_cli, config, *cmd)
    with Store(load_config(config).store_file) as store:
        rec = store.reconciliation(None)
        plan, _ = approve_standing(store, rec["id"], ["add_to_civicrm_group",
                                                      "remove_from_civicrm_group"])
        items = items_frame(store, plan.id)
        assert (items[items["interest_id"].notna()]["decision"] == "undecided").all()
        _, waiting = counts_of(store, plan.id)
    assert waiting.get("interests:add_to_civicrm_group")


def test_an_applied_plan_with_interests_converges(world, run_cli, emulator, civi_db):
    mapping, _, config = world
    _plan(run_cli, config)
    cli_ok(run_cli, config, "approve", "--all", "--reviewer", "Ada")
    cli_ok(run_cli, config, "approve", "--freeze", "--reviewer", "Ada")
    dry = cli_ok(run_cli, config, "apply")
    assert "civisets@example.org -> in 'Volunteering'" in dry
    assert "the contact this plan creates created@example.org" in dry
    out = cli_ok(run_cli, config, "apply", "--execute")
    items = _items(config)
    assert f"all {len(items)} applied items agree on both sides" in out
    assert "interest rows still to change" not in out
    assert set(items["journal_state"]) == {"done"}, items[
        ["email", "action", "journal_state", "journal_detail"]].to_string()
    assert emulator.get_member(TEST_LIST_ID, "civisets@example.org")["interests"][VOL] is True
    assert emulator.get_member(TEST_LIST_ID, "civiclears@example.org")["interests"][VOL] is False
    assert _group_status(civi_db, "mcadds@example.org", mapping[VOL]) == "Added"
    assert _group_status(civi_db, "mcremoves@example.org", mapping[VOL]) == "Removed"
    assert _group_status(civi_db, "created@example.org", mapping[VOL]) == "Added"
    # History rows as core writes them, with the plan's tracking note.
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT h.method, h.status, h.tracking FROM civicrm_subscription_history h"
                    " JOIN civicrm_email e ON e.contact_id = h.contact_id WHERE e.email = %s"
                    " AND h.group_id = %s ORDER BY h.id DESC LIMIT 1",
                    ("mcadds@example.org", mapping[VOL]))
        assert cur.fetchone() == ("API", "Added", "civimc-audit plan 1")
    rows = _interest_rows(run_cli, config)
    assert {r["outcome"] for r in rows} == {"no_change"}, [
        (r["email"], r["interest_id"], r["outcome"]) for r in rows if r["outcome"] != "no_change"]
    # Applying again sends nothing.
    calls = len(emulator.requests)
    cli_ok(run_cli, config, "apply", "--execute", "--no-verify")
    assert not [r for r in emulator.requests[calls:] if r.method in ("POST", "PATCH", "PUT")]


def test_an_interest_changed_since_the_snapshot_goes_stale(world, run_cli, emulator, civi_db):
    mapping, _, config = world
    _plan(run_cli, config)
    cli_ok(run_cli, config, "approve", "--interest", VOL, "--reviewer", "Ada")
    cli_ok(run_cli, config, "approve", "--freeze", "--reviewer", "Ada")
    # At Mailchimp civisets's interests change another way; in CiviCRM someone else adds mcadds
    # back to the group (a history row, as core writes it).
    emulator.update_member(TEST_LIST_ID, "civisets@example.org",
                           interests={VOL: False, CAMP: True})
    civi_db.fixture.add_to_group(_contact_of(civi_db, "mcadds@example.org"), mapping[VOL],
                                 "2030-01-01T00:00:00Z")
    civi_db.fixture.commit()
    out = cli_ok(run_cli, config, "apply", "--execute", "--no-verify", code=1)
    assert "changed at Mailchimp" in out and "new CiviCRM group history" in out
    items = _items(config)
    state = {r["email"]: r["journal_state"]
             for r in items[items["interest_id"] == VOL].to_dict("records")}
    assert state["civisets@example.org"] == "stale"
    assert state["mcadds@example.org"] == "stale"
    assert state["mcremoves@example.org"] == "done"
    assert state["civiclears@example.org"] == "done"
    # The contact R3 creates was not approved: its interest is left alone.
    assert state["created@example.org"] == "stale"


def test_a_killed_interest_apply_resumes_without_sending_twice(world, run_cli, emulator,
                                                               civi_db):
    import signal
    from collections import Counter

    from support.apply import start_apply

    mapping, _, config = world
    _plan(run_cli, config)
    cli_ok(run_cli, config, "approve", "--all", "--reviewer", "Ada")
    cli_ok(run_cli, config, "approve", "--freeze", "--reviewer", "Ada")
    # Killed right after the interest PATCHes (not journaled), then right after the interest
    # group writes in CiviCRM (committed, not journaled).
    for point in ("interest_mailchimp_after_call", "interest_civicrm_after_call"):
        proc = start_apply(config, point)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == -signal.SIGKILL, (point, out, err)
    cli_ok(run_cli, config, "apply", "--execute", "--no-verify")
    items = _items(config)
    assert set(items["journal_state"]) == {"done"}, items[
        ["email", "action", "journal_state", "journal_detail"]].to_string()
    patches = Counter(r.path for r in emulator.requests
                      if r.method == "PATCH" and r.response is not None)
    want = len(items[(items["target"] == "mailchimp") & items["interest_id"].notna()])
    assert len(patches) == want and set(patches.values()) == {1}, patches
    civi_db.conn.commit()
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT contact_id, group_id, count(*) FROM civicrm_subscription_history"
                    " WHERE tracking = 'civimc-audit plan 1' AND group_id IN %s"
                    " GROUP BY contact_id, group_id", (tuple(mapping.values()),))
        rows = cur.fetchall()
    want = len(items[(items["target"] == "civicrm") & items["interest_id"].notna()])
    assert len(rows) == want and {n for _, _, n in rows} == {1}, rows
    assert {r["outcome"] for r in _interest_rows(run_cli, config)} == {"no_change"}
    calls = len(emulator.requests)
    cli_ok(run_cli, config, "apply", "--execute", "--no-verify")
    assert not [r for r in emulator.requests[calls:] if r.method in ("POST", "PATCH", "PUT")]


def test_verify_lists_an_applied_interest_item_that_still_disagrees(world, run_cli, emulator):
    _, _, config = world
    _plan(run_cli, config)
    cli_ok(run_cli, config, "approve", "--interest", VOL, "--reviewer", "Ada")
    cli_ok(run_cli, config, "approve", "--freeze", "--reviewer", "Ada")
    cli_ok(run_cli, config, "apply", "--execute", "--no-verify", code=1)  # created: stale
    # Someone puts civiclears back in the interest after the apply, a day into the future.
    emulator.update_member(TEST_LIST_ID, "civiclears@example.org",
                           interests={VOL: True, CAMP: False}, last_changed="2030-01-01T00:00:00Z")
    out = cli_ok(run_cli, config, "verify", code=1)
    line = next(x for x in out.splitlines() if "civiclears@example.org" in x)
    assert "clear_interest" in line and "now add_to_civicrm_group" in line


def test_an_interest_patch_without_an_answer_stays_sending_and_is_settled(world, run_cli,
                                                                          emulator):
    _, _, config = world
    _plan(run_cli, config)
    cli_ok(run_cli, config, "approve", "--interest", VOL, "--target", "mailchimp",
           "--reviewer", "Ada")
    cli_ok(run_cli, config, "approve", "--freeze", "--reviewer", "Ada")
    # The first PATCH is made at Mailchimp, but its answer never comes back (and the client
    # does not retry).
    config.write_text(config.read_text(encoding="utf-8").replace(
        "[mailchimp]\n", "[mailchimp]\nretries = 0\n"), encoding="utf-8")
    emulator.faults.configure(match=lambda method, path: method == "PATCH")
    emulator.faults.queue("drop-after", 1)
    code, out, err = run_cli("--config", config, "apply", "--execute", "--no-verify")
    assert code != 0 and "journaled as sending" in out + err
    items = _items(config)
    mc = items[(items["interest_id"] == VOL) & (items["target"] == "mailchimp")]
    assert "sending" in set(mc["journal_state"])
    emulator.faults.reset()
    calls = len(emulator.requests)
    cli_ok(run_cli, config, "apply", "--execute", "--no-verify")
    items = _items(config)
    mc = items[(items["interest_id"] == VOL) & (items["target"] == "mailchimp")]
    assert set(mc["journal_state"]) == {"done"}
    settled = mc[mc["journal_detail"].str.contains("interrupted run")]
    assert not settled.empty
    again = {r.path for r in emulator.requests[calls:] if r.method == "PATCH"}
    from civimc_audit.common.emails import member_hash

    assert not again & {f"/3.0/lists/{TEST_LIST_ID}/members/{member_hash(e)}"
                        for e in settled["email"]}
