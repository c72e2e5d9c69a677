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

from civimc_audit.common.emails import install_sql_macros
from civimc_audit.common.times import utcnow
from civimc_audit.errors import StoreError
from civimc_audit.store import Store

# outcome -> (target system, action); the civicrm add becomes create_contact without a contact.
ACTIONS = {
    "add_to_mailchimp": ("mailchimp", "subscribe"),
    "resubscribe_in_mailchimp": ("mailchimp", "resubscribe"),
    "unsubscribe_in_mailchimp": ("mailchimp", "unsubscribe"),
    "add_to_civicrm_group": ("civicrm", "add_to_group"),
    "remove_from_civicrm_group": ("civicrm", "remove_from_group"),
}
REMOVALS = ("remove_from_civicrm_group", "unsubscribe_in_mailchimp")

ITEM_COLUMNS = ["item_id", "person_id", "target", "action", "outcome", "rule", "reason_code",
                "flags", "reason", "email", "contact_id", "member_id", "display_name",
                "mailchimp_status", "mailchimp_changed", "civicrm_status", "civicrm_changed",
                "payload"]


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
                               columns=", ".join(ITEM_COLUMNS))
    with store.transaction() as con:
        plan_id = con.execute(
            "INSERT INTO plans (token, reconciliation_id, civicrm_snapshot_id,"
            " mailchimp_snapshot_id, group_id, list_id, created_at, status)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, 'open') RETURNING id",
            [uuid.uuid4().hex, rec["id"], civi.id, mc.id, group_id, mc.meta.get("list_id"),
             utcnow()]).fetchone()[0]
        con.execute(sql, {"plan": plan_id, "rec": rec["id"], "civi": civi.id, "mc": mc.id})
    return get_plan(store, plan_id)


# Every item of plan $1 with its current decision and latest journal state (items_frame).
ITEMS_SQL = """
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
               i.payload,
               coalesce(d.decision, 'undecided') AS decision, d.reviewer, d.decided_at, d.note,
               j.state AS journal_state, j.title AS journal_title, j.detail AS journal_detail,
               CASE WHEN i.outcome IN ('remove_from_civicrm_group', 'unsubscribe_in_mailchimp')
                    THEN 0 WHEN i.flags <> '' THEN 1 ELSE 2 END AS priority
        FROM plan_items i
        LEFT JOIN d USING (item_id)
        LEFT JOIN j USING (item_id)
        WHERE i.plan_id = $1
        ORDER BY priority, i.item_id
        """


def items_frame(store: Store, plan_id: int) -> pd.DataFrame:
    """Every item of a plan with its current decision and latest journal state.

    `changed` is the later of the two change dates (what the date-range filter uses), and
    `priority` orders removals first, then flagged items, then the rest.
    """
    return store.con.execute(ITEMS_SQL, [plan_id]).df()


@dataclass(frozen=True)
class PlanSummary:
    """A plan and its items counted: per (target, action) how many items and how many of them
    are approved, rejected and undecided; all items, the removals and the flagged ones."""

    plan: Plan
    actions: list[dict]
    items: int
    removals: int
    flagged: int


def plan_summary(store: Store, plan_id: int | None = None) -> PlanSummary:
    """The counts `plan --show` prints (and `plan --show --json` gives)."""
    plan = get_plan(store, plan_id)
    items = items_frame(store, plan.id)
    actions = []
    if not items.empty:
        counts = items.groupby(["target", "action", "decision"]).size().unstack(fill_value=0)
        actions = [{"target": target, "action": action, "items": int(row.sum()),
                    **{d: int(row.get(d, 0)) for d in ("approved", "rejected", "undecided")}}
                   for (target, action), row in counts.iterrows()]
    return PlanSummary(plan, actions, len(items), int(items["outcome"].isin(REMOVALS).sum()),
                       int((items["flags"] != "").sum()))


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
    return lines
