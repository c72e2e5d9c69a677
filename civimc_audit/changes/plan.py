"""Change sets: a reconciliation turned into one item per action, for people to review.

A plan holds one item per change the outcomes call for (target system, action, person,
payload); `no_change` and `cannot_sync` rows need no action and get no item. Items start
undecided. Decisions live in their own append-only table (see review.py); the current decision of
an item is its latest decision row. Plans are never edited once built: a new reconciliation
gets a new plan. `plan_for` (what `civimc-audit plan` calls) hands back a reconciliation's open
plan instead of building a second one beside it, unless asked for a new one.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from civimc_audit.common.emails import install_sql_macros, member_hash
from civimc_audit.common.times import utcnow
from civimc_audit.errors import StoreError
from civimc_audit.store import Store
from civimc_audit.store.frames import insert_frame, query_frame

# outcome -> (target system, action); the civicrm add becomes create_contact without a contact.
ACTIONS = {
    "add_to_mailchimp": ("mailchimp", "subscribe"),
    "resubscribe_in_mailchimp": ("mailchimp", "resubscribe"),
    "unsubscribe_in_mailchimp": ("mailchimp", "unsubscribe"),
    "add_to_civicrm_group": ("civicrm", "add_to_group"),
    "remove_from_civicrm_group": ("civicrm", "remove_from_group"),
}
REMOVALS = ("remove_from_civicrm_group", "unsubscribe_in_mailchimp")
# interest outcome -> (target system, action): one item per person and mapped interest that
# changes (DESIGN "Interest groups"); their items name the interest and the mapped group.
INTEREST_ACTIONS = {
    "set_interest_in_mailchimp": ("mailchimp", "set_interest"),
    "clear_interest_in_mailchimp": ("mailchimp", "clear_interest"),
    "add_to_civicrm_group": ("civicrm", "add_to_interest_group"),
    "remove_from_civicrm_group": ("civicrm", "remove_from_interest_group"),
}
INTEREST_REMOVALS = ("clear_interest", "remove_from_interest_group")  # actions

ITEM_COLUMNS = ["item_id", "person_id", "target", "action", "outcome", "rule", "reason_code",
                "flags", "reason", "email", "contact_id", "member_id", "display_name",
                "mailchimp_status", "mailchimp_changed", "civicrm_status", "civicrm_changed",
                "payload", "interest_id", "interest_name", "civicrm_group_id"]
# The columns the subscription group's items fill (interest columns stay NULL).
SUBSCRIPTION_COLUMNS = ITEM_COLUMNS[:ITEM_COLUMNS.index("interest_id")]


@dataclass(frozen=True)
class Plan:
    """One plan's registry row."""

    id: int
    token: str
    reconciliation_id: int
    civicrm_snapshot_id: int
    mailchimp_snapshot_id: int
    group_id: int | None
    list_id: str | None
    created_at: datetime
    status: str
    allow_pending: bool
    frozen_at: datetime | None
    frozen_hash: str | None
    frozen_reviewers: list
    frozen_by: str | None

    @property
    def frozen(self) -> bool:
        return self.status == "frozen"

    @property
    def target_group(self) -> int:
        """The CiviCRM group the plan writes to (every plan built from a CiviCRM snapshot has one)."""
        if self.group_id is None:
            raise StoreError(f"plan {self.id} names no CiviCRM group; build a new plan")
        return self.group_id

    @property
    def target_list(self) -> str:
        """The Mailchimp audience the plan writes to."""
        if self.list_id is None:
            raise StoreError(f"plan {self.id} names no Mailchimp audience; build a new plan")
        return self.list_id


_PLAN_COLS = ("id, token, reconciliation_id, civicrm_snapshot_id, mailchimp_snapshot_id, group_id,"
              " list_id, created_at, status, allow_pending, frozen_at, frozen_hash,"
              " frozen_reviewers, frozen_by")


def get_plan(store: Store, plan_id: int | None = None) -> Plan:
    """The plan with this id, or the newest plan."""
    if plan_id is None:
        row = store.con.execute("SELECT max(id) FROM plans").fetchone()
        if row is None or row[0] is None:
            raise StoreError("no plan in the store yet: run `civimc-audit plan`")
        plan_id = row[0]
    row = store.con.execute(f"SELECT {_PLAN_COLS} FROM plans WHERE id = ?", [plan_id]).fetchone()
    if row is None:
        raise StoreError(f"no plan {plan_id} in {store.path}")
    values = list(row)
    values[12] = json.loads(values[12] or "[]")
    return Plan(*values)


def latest_frozen_plan(store: Store) -> Plan:
    row = store.con.execute("SELECT max(id) FROM plans WHERE status = 'frozen'").fetchone()
    if row is None or row[0] is None:
        raise StoreError("no frozen plan in the store: review and approve a plan, then "
                         "`civimc-audit approve --freeze`")
    return get_plan(store, row[0])


def open_plan_of(store: Store, reconciliation_id: int) -> Plan | None:
    """The newest open (not frozen) plan of a reconciliation, or None."""
    row = store.con.execute("SELECT max(id) FROM plans WHERE reconciliation_id = ? AND"
                            " status = 'open'", [reconciliation_id]).fetchone()
    return None if row is None or row[0] is None else get_plan(store, row[0])


def plan_for(store: Store, reconciliation_id: int | None = None, *,
             new: bool = False) -> tuple[Plan, bool]:
    """(plan, built) for a reconciliation (default: the latest): its open plan when it has one
    (built False), so running `plan` twice does not leave two open plans to review; a new plan
    when it has none or `new` is set (the older open plan then stays as it is)."""
    rec = store.reconciliation(reconciliation_id)
    existing = None if new else open_plan_of(store, rec["id"])
    if existing is not None:
        return existing, False
    return build_plan(store, rec["id"]), True


def _payload(row: dict, group_id: int | None) -> tuple[str, dict]:
    """The action and what will be sent for one outcome row."""
    target, action = ACTIONS[row["outcome"]]
    if target == "mailchimp":
        email = row["target_email"] or row["email"]
        status = "unsubscribed" if action == "unsubscribe" else "subscribed"
        payload = {"email_address": email, "status": status}
        if action == "subscribe":
            merge = {k: v for k, v in (("FNAME", row["first_name"]), ("LNAME", row["last_name"]))
                     if _present(v)}
            if merge:
                payload["merge_fields"] = merge
        return action, payload
    if _present(row["contact_id"]):
        return action, {"contact_id": int(row["contact_id"]), "group_id": group_id}
    first = row["fname"] if _present(row["fname"]) else None
    last = row["lname"] if _present(row["lname"]) else None
    return "create_contact", {"email": row["email"], "first_name": first, "last_name": last,
                              "group_id": group_id}


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and v != v) and v is not pd.NA and v != ""


def _json_text(expr: str) -> str:
    """SQL: `expr` (text) as a JSON value, null when NULL."""
    return f"coalesce(to_json({expr})::VARCHAR, 'null')"


def _json_int(value: int | None) -> str:
    return "null" if value is None else str(int(value))


def _actions_values() -> str:
    return ", ".join(f"('{outcome}', '{target}', '{action}')"
                     for outcome, (target, action) in ACTIONS.items())


# The plan's items from its reconciliation's outcome rows, as build_plan inserts them: payload
# keys in sorted order, as json.dumps(…, sort_keys=True) writes them (see _payload).
_ITEMS_INSERT = """
INSERT INTO plan_items (plan_id, {columns})
WITH o AS (
    SELECT o.*, a.target, a.action AS base_action, nullif(c.first_name, '') AS first_name,
           nullif(c.last_name, '') AS last_name,
           nullif(m.merge_fields->>'$.FNAME', '') AS fname,
           nullif(m.merge_fields->>'$.LNAME', '') AS lname,
           coalesce(nullif(o.target_email, ''), o.email) AS mc_email
    FROM outcomes o
    JOIN (VALUES {actions}) a(outcome, target, action) USING (outcome)
    LEFT JOIN civicrm_contact c ON c.snapshot_id = $civi AND c.id = o.contact_id
    LEFT JOIN mailchimp_member m ON m.snapshot_id = $mc AND m.id = o.member_id
    WHERE o.reconciliation_id = $rec
)
SELECT $plan, row_number() OVER (ORDER BY person_id) AS item_id, person_id, target,
       CASE WHEN target = 'civicrm' AND contact_id IS NULL THEN 'create_contact'
            ELSE base_action END AS action,
       outcome, rule, coalesce(reason_code, '') AS reason_code, coalesce(flags, '') AS flags,
       reason, email, contact_id,
       CASE WHEN nullif(member_id, '') IS NOT NULL THEN member_id
            WHEN target = 'mailchimp' THEN member_hash(mc_email) END AS member_id,
       display_name, mailchimp_status, mailchimp_changed, civicrm_status, civicrm_changed,
       CASE
         WHEN target = 'mailchimp' THEN
           '{{"email_address": ' || """ + _json_text("mc_email") + """
           || CASE WHEN base_action = 'subscribe'
                        AND (first_name IS NOT NULL OR last_name IS NOT NULL)
                   THEN ', "merge_fields": {{' || concat_ws(', ',
                          CASE WHEN first_name IS NOT NULL
                               THEN '"FNAME": ' || to_json(first_name)::VARCHAR END,
                          CASE WHEN last_name IS NOT NULL
                               THEN '"LNAME": ' || to_json(last_name)::VARCHAR END) || '}}'
                   ELSE '' END
           || ', "status": "'
           || CASE WHEN base_action = 'unsubscribe' THEN 'unsubscribed' ELSE 'subscribed' END
           || '"}}'
         WHEN contact_id IS NOT NULL THEN
           '{{"contact_id": ' || contact_id || ', "group_id": {group}}}'
         ELSE
           '{{"email": ' || """ + _json_text("email") + """ || ', "first_name": '
           || """ + _json_text("fname") + """ || ', "group_id": {group}, "last_name": '
           || """ + _json_text("lname") + """ || '}}'
       END AS payload
FROM o
"""


def build_plan(store: Store, reconciliation_id: int | None = None) -> Plan:
    """Turn a reconciliation into a new plan: one undecided item per action."""
    rec = store.reconciliation(reconciliation_id)
    civi = store.snapshot(rec["civicrm_snapshot_id"])
    mc = store.snapshot(rec["mailchimp_snapshot_id"])
    group_id = civi.meta.get("group_id")
    # One INSERT … SELECT builds every item (issue 18: no per-item Python over the plan); the
    # payloads are what _payload gives (tests/changes/test_plan_sql.py compares them).
    install_sql_macros(store.con)
    sql = _ITEMS_INSERT.format(actions=_actions_values(), group=_json_int(group_id),
                               columns=", ".join(SUBSCRIPTION_COLUMNS))
    with store.transaction() as con:
        plan_id = con.execute(
            "INSERT INTO plans (token, reconciliation_id, civicrm_snapshot_id,"
            " mailchimp_snapshot_id, group_id, list_id, created_at, status)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'open') RETURNING id",
            [uuid.uuid4().hex, rec["id"], civi.id, mc.id, group_id, mc.meta.get("list_id"),
             utcnow()]).fetchone()[0]
        con.execute(sql, {"plan": plan_id, "rec": rec["id"], "civi": civi.id, "mc": mc.id})
        _add_interests(con, store, plan_id, rec["id"], mc.id)
    return get_plan(store, plan_id)


def _add_interests(con, store: Store, plan_id: int, reconciliation_id: int,
                   mailchimp_snapshot_id: int) -> None:
    """Interest items after the subscription items, and a new member's interests in its
    subscribe payload (nothing without mapped interests)."""
    joining = _new_member_interests(store, reconciliation_id, mailchimp_snapshot_id)
    if joining:
        rows = con.execute("SELECT item_id, person_id, payload FROM plan_items WHERE plan_id = ?"
                           " AND action = 'subscribe' AND person_id IN (SELECT unnest(?))",
                           [plan_id, sorted(joining)]).fetchall()
        for item_id, person, payload in rows:
            merged = {**json.loads(payload), "interests": joining[int(person)]}
            con.execute("UPDATE plan_items SET payload = ? WHERE plan_id = ? AND item_id = ?",
                        [json.dumps(merged, sort_keys=True), plan_id, item_id])
    start = (con.execute("SELECT coalesce(max(item_id), 0) FROM plan_items WHERE plan_id = ?",
                         [plan_id]).fetchone() or (0,))[0] + 1
    rows = _interest_items(store, reconciliation_id, start=start)
    if not rows:
        return
    items = pd.DataFrame(rows, columns=ITEM_COLUMNS)
    for col in ("contact_id", "civicrm_group_id"):
        items[col] = items[col].astype("Int64")
    for col in ("interest_id", "interest_name"):
        items[col] = items[col].astype(object)
    insert_frame(con, "plan_items", items, ["plan_id", *ITEM_COLUMNS],
                 select=f"{plan_id}, {', '.join(ITEM_COLUMNS)}")


def _new_member_interests(store: Store, reconciliation_id: int, mailchimp_snapshot_id: int
                          ) -> dict[int, dict[str, bool]]:
    """person -> the interests a new member is subscribed with: for each mapped interest the
    audience has, whether the contact is in its CiviCRM group (rule I1 leaves a person who is
    not yet a member alone; a member Mailchimp creates without them would be in no interest, and
    the next audit would take them out of every mapped group). Empty without mapped interests."""
    rows = store.con.execute(
        "SELECT i.person_id, i.interest_id, i.civicrm_status = 'Added'"
        " FROM interest_outcomes i JOIN outcomes o"
        " ON o.reconciliation_id = i.reconciliation_id AND o.person_id = i.person_id"
        " WHERE i.reconciliation_id = ? AND o.outcome = 'add_to_mailchimp'"
        " AND i.interest_id IN (SELECT id FROM mailchimp_interest WHERE snapshot_id = ?)"
        " ORDER BY i.person_id, i.interest_id",
        [reconciliation_id, mailchimp_snapshot_id]).fetchall()
    out: dict[int, dict[str, bool]] = {}
    for person, interest, civi_in in rows:
        out.setdefault(int(person), {})[interest] = bool(civi_in)
    return out


def _interest_items(store: Store, reconciliation_id: int, start: int) -> list[dict]:
    """One item per interest row that changes something, numbered from `start` (after the
    subscription items, so they keep the numbers they had before interests were mapped).

    A Mailchimp item PATCHes the member's one interest (`interests: {id: true|false}`, nothing
    else: the member's status is the subscription items' business); a CiviCRM item sets the
    contact's status in the mapped group as core writes it. A person the plan creates a
    contact for (R3) has no contact id yet: the item names the address, and apply finds the
    contact its plan created. Its civicrm_status and changed dates are the interest's, the
    mailchimp_status the member's subscription status (as in the subscription items)."""
    frame = store.con.execute(
        "SELECT i.person_id, i.interest_id, i.interest_name, i.civicrm_group_id, i.outcome,"
        " i.rule, i.reason_code, i.reason, i.civicrm_status, i.civicrm_changed,"
        " i.mailchimp_changed, coalesce(i.contact_id, o.contact_id) AS contact_id, o.email,"
        " o.target_email, o.member_id, o.display_name, o.mailchimp_status, o.flags"
        " FROM interest_outcomes i JOIN outcomes o"
        " ON o.reconciliation_id = i.reconciliation_id AND o.person_id = i.person_id"
        " WHERE i.reconciliation_id = ? AND i.outcome IN (SELECT unnest(?))"
        " ORDER BY i.person_id, i.interest_id",
        [reconciliation_id, list(INTEREST_ACTIONS)]).df()
    rows = []
    for item_id, row in enumerate(frame.to_dict("records"), start=start):
        target, action = INTEREST_ACTIONS[row["outcome"]]
        email = row["target_email"] if _present(row["target_email"]) else row["email"]
        contact_id = int(row["contact_id"]) if _present(row["contact_id"]) else None
        member_id = row["member_id"] if _present(row["member_id"]) else None
        if target == "mailchimp":
            payload: dict = {"email_address": email,
                             "interests": {row["interest_id"]: action == "set_interest"}}
            member_id = member_id or member_hash(email)
        else:
            payload = {"contact_id": contact_id, "group_id": int(row["civicrm_group_id"])}
            if contact_id is None:
                payload["email"] = row["email"]
        rows.append({
            "item_id": item_id, "person_id": row["person_id"], "target": target,
            "action": action, "outcome": row["outcome"], "rule": row["rule"],
            "reason_code": row["reason_code"] or "", "flags": row["flags"] or "",
            "reason": row["reason"], "email": row["email"], "contact_id": contact_id,
            "member_id": member_id, "display_name": row["display_name"],
            "mailchimp_status": row["mailchimp_status"],
            "mailchimp_changed": row["mailchimp_changed"],
            "civicrm_status": row["civicrm_status"], "civicrm_changed": row["civicrm_changed"],
            "payload": json.dumps(payload, sort_keys=True), "interest_id": row["interest_id"],
            "interest_name": row["interest_name"],
            "civicrm_group_id": int(row["civicrm_group_id"]),
        })
    return rows


# Every item of plan $1 with its current decision and latest journal state (items_frame).
_ITEMS_SELECT = """
        WITH d AS (
            SELECT * FROM decisions WHERE plan_id = $1
            QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY seq DESC) = 1),
        j AS (
            SELECT * FROM journal WHERE plan_id = $1
            QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY seq DESC) = 1)
        SELECT i.item_id, i.person_id, i.target, i.action, i.outcome, i.rule, i.reason_code,
               i.flags, i.reason, i.email, i.contact_id, i.member_id, i.display_name,
               i.mailchimp_status, i.mailchimp_changed, i.civicrm_status, i.civicrm_changed,
               greatest(i.mailchimp_changed, i.civicrm_changed) AS changed,
               i.payload, i.interest_id, i.interest_name, i.civicrm_group_id,
               coalesce(d.decision, 'undecided') AS decision, d.reviewer, d.decided_at, d.note,
               j.state AS journal_state, j.title AS journal_title, j.detail AS journal_detail,
               CASE WHEN i.action IN ('remove_from_group', 'unsubscribe', 'clear_interest',
                                      'remove_from_interest_group')
                    THEN 0 WHEN i.flags <> '' THEN 1 ELSE 2 END AS priority
        FROM plan_items i
        LEFT JOIN d USING (item_id)
        LEFT JOIN j USING (item_id)
        WHERE i.plan_id = $1
        """
ITEMS_SQL = _ITEMS_SELECT + "ORDER BY priority, i.item_id"
#: The approved items only, in item order (what apply sends).
APPROVED_ITEMS_SQL = (f"SELECT * FROM ({_ITEMS_SELECT}) WHERE decision = 'approved'"
                      " ORDER BY item_id")


def items_frame(store: Store, plan_id: int) -> pd.DataFrame:
    """Every item of a plan with its current decision and latest journal state.

    `changed` is the later of the two change dates (what the date-range filter uses), and
    `priority` orders removals first, then flagged items, then the rest.
    """
    return query_frame(store.con, ITEMS_SQL, [plan_id])


@dataclass(frozen=True)
class PlanSummary:
    """A plan and its items counted: per (target, action) how many items and how many of them
    are approved, rejected and undecided; all items, the removals and the flagged ones."""

    plan: Plan
    actions: list[dict]
    items: int
    removals: int
    flagged: int
    interest_items: int = 0
    interest_removals: int = 0


# Items per (target, action) and decision, and the totals plan_summary gives, counted in the
# store: plan 1 of a million people has half a million items, which a DataFrame of every
# column took most of `plan`'s memory to count (issue 18).
_SUMMARY_SQL = """
WITH d AS (
    SELECT item_id, decision FROM decisions WHERE plan_id = $plan
    QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY seq DESC) = 1
), i AS (
    SELECT i.target, i.action, i.outcome, i.flags, i.interest_id,
           coalesce(d.decision, 'undecided') AS decision
    FROM plan_items i LEFT JOIN d USING (item_id)
    WHERE i.plan_id = $plan
)
SELECT target, action, count(*) AS items,
       count(*) FILTER (WHERE decision = 'approved') AS approved,
       count(*) FILTER (WHERE decision = 'rejected') AS rejected,
       count(*) FILTER (WHERE decision = 'undecided') AS undecided,
       count(*) FILTER (WHERE outcome IN $removals AND interest_id IS NULL) AS removals,
       count(*) FILTER (WHERE flags <> '') AS flagged,
       count(*) FILTER (WHERE interest_id IS NOT NULL) AS interest_items,
       count(*) FILTER (WHERE action IN $interest_removals) AS interest_removals
FROM i
GROUP BY target, action
ORDER BY target, action
"""


def plan_summary(store: Store, plan_id: int | None = None) -> PlanSummary:
    """The counts `plan --show` prints (and `plan --show --json` gives)."""
    plan = get_plan(store, plan_id)
    rows = store.con.execute(_SUMMARY_SQL, {
        "plan": plan.id, "removals": list(REMOVALS),
        "interest_removals": list(INTEREST_REMOVALS)}).fetchall()
    actions = [{"target": target, "action": action, "items": int(items),
                "approved": int(approved), "rejected": int(rejected),
                "undecided": int(undecided)}
               for target, action, items, approved, rejected, undecided, *_ in rows]
    totals = [sum(int(r[k]) for r in rows) for k in range(6, 10)]
    return PlanSummary(plan, actions, sum(a["items"] for a in actions), *totals)


def summary_lines(store: Store, plan_id: int | None = None) -> list[str]:
    """What `plan --show` prints: the plan, its state, and counts per action and decision."""
    summary = plan_summary(store, plan_id)
    plan = summary.plan
    lines = [f"plan {plan.id}: reconciliation {plan.reconciliation_id} (civicrm snapshot "
             f"{plan.civicrm_snapshot_id}, mailchimp snapshot {plan.mailchimp_snapshot_id}), "
             f"created {plan.created_at:%Y-%m-%d %H:%M:%S}Z, {plan.status}"]
    if plan.frozen:
        lines.append(f"  frozen {plan.frozen_at:%Y-%m-%d %H:%M:%S}Z by {plan.frozen_by}; "
                     f"reviewers: {', '.join(plan.frozen_reviewers) or '-'}; "
                     f"sha256 {plan.frozen_hash}"
                     + ("; refused needs_confirmation resubscribes re-sent as pending"
                        if plan.allow_pending else ""))
    if not summary.items:
        lines.append("  no changes to make")
        return lines
    lines.append(f"  {'target':<10} {'action':<18} {'items':>6} {'approved':>9} {'rejected':>9}"
                 f" {'undecided':>10}")
    for a in summary.actions:
        lines.append(f"  {a['target']:<10} {a['action']:<18} {a['items']:>6} "
                     f"{a['approved']:>9} {a['rejected']:>9} {a['undecided']:>10}")
    lines.append(f"  {summary.items} items; {summary.removals} removals; {summary.flagged} flagged")
    if summary.interest_items:
        lines.append(f"  of them {summary.interest_items} interest items; "
                     f"{summary.interest_removals} interest removals")
    return lines
