"""Issue 18: `plan` builds its items in one INSERT … SELECT. Every item must be what the earlier
per-row Python built (kept here as the reference, through plan._payload): same ids, actions,
member ids (Mailchimp's hash when the member is not there yet) and the same payload."""

from __future__ import annotations

import json

import pytest

from civimc_audit.changes.plan import ACTIONS, SUBSCRIPTION_COLUMNS, _payload, _present, build_plan
from civimc_audit.common.emails import member_hash
from civimc_audit.config import PolicySettings
from civimc_audit.reconcile import reconcile
from civimc_audit.store import Store
from civimc_sandbox.population import generate, write_store


def reference_items(store: Store, rec_id: int, civi: int, mc: int, group_id) -> list[dict]:
    """The items as build_plan made them before issue 18 (row by row in Python)."""
    cursor = store.con.execute(
        "SELECT o.*, c.first_name, c.last_name, m.merge_fields->>'$.FNAME' AS fname,"
        " m.merge_fields->>'$.LNAME' AS lname FROM outcomes o"
        " LEFT JOIN civicrm_contact c ON c.snapshot_id = ? AND c.id = o.contact_id"
        " LEFT JOIN mailchimp_member m ON m.snapshot_id = ? AND m.id = o.member_id"
        " WHERE o.reconciliation_id = ? AND o.outcome IN (SELECT unnest(?)) ORDER BY o.person_id",
        [civi, mc, rec_id, list(ACTIONS)])
    names = [d[0] for d in cursor.description]
    items = []
    for item_id, values in enumerate(cursor.fetchall(), start=1):
        row = dict(zip(names, values, strict=True))
        target = ACTIONS[row["outcome"]][0]
        action, payload = _payload(row, group_id)
        member_id = row["member_id"] if _present(row["member_id"]) else None
        if target == "mailchimp" and member_id is None:
            member_id = member_hash(payload["email_address"])
        items.append({
            "item_id": item_id, "person_id": row["person_id"], "target": target,
            "action": action, "outcome": row["outcome"], "rule": row["rule"],
            "reason_code": row["reason_code"] or "", "flags": row["flags"] or "",
            "reason": row["reason"], "email": row["email"], "contact_id": row["contact_id"],
            "member_id": member_id, "display_name": row["display_name"],
            "mailchimp_status": row["mailchimp_status"],
            "mailchimp_changed": row["mailchimp_changed"],
            "civicrm_status": row["civicrm_status"], "civicrm_changed": row["civicrm_changed"],
            "payload": payload})
    return items


@pytest.mark.parametrize("group_id", [1, None])
def test_sql_plan_items_are_the_python_ones(tmp_path, group_id):
    with Store(tmp_path / "audit.duckdb") as store:
        civi, mc = write_store(store, generate(2_000, seed=3), copies=2)
        # names a JSON string must escape, blanks, and accents in the people's names
        store.con.execute("UPDATE civicrm_contact SET first_name = CASE id % 4 WHEN 0 THEN"
                          " 'Zoë \"Q\" \\ tab\t' WHEN 1 THEN '' ELSE first_name END")
        store.con.execute("UPDATE mailchimp_member SET merge_fields = json_object('FNAME',"
                          " 'Ann \"x\"', 'LNAME', '') WHERE hash(id) % 3 = 0")
        rec = reconcile(store, PolicySettings(), civicrm_snapshot_id=civi,
                        mailchimp_snapshot_id=mc)
        if group_id is None:  # a snapshot's meta without a group id: payloads say null
            store.con.execute("UPDATE snapshots SET meta = json_merge_patch(meta, ?) WHERE id = ?",
                              [json.dumps({"group_id": None}), civi])
        expected = reference_items(store, rec["id"], civi, mc, group_id)
        plan = build_plan(store, rec["id"])
        cursor = store.con.execute(f"SELECT {', '.join(SUBSCRIPTION_COLUMNS)} FROM plan_items"
                                   " WHERE plan_id = ? ORDER BY item_id", [plan.id])
        got = [dict(zip(SUBSCRIPTION_COLUMNS, r, strict=True)) for r in cursor.fetchall()]
    assert len(got) == len(expected) > 100
    assert {i["action"] for i in got} >= {"subscribe", "create_contact", "remove_from_group"}
    same_text = 0
    for g, e in zip(got, expected, strict=True):
        raw = g["payload"]
        assert dict(g, payload=json.loads(raw)) == e
        if raw.isascii() and "\\" not in raw:  # the text json.dumps wrote, too
            assert raw == json.dumps(e["payload"], sort_keys=True)
            same_text += 1
    assert same_text > len(got) // 2
