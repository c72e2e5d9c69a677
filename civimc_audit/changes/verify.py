"""Verify: fresh snapshots of both sides, a new reconciliation, and every applied item whose
person still needs a change. After a fully approved plan is applied the systems converge and
this reports nothing left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from civimc_audit.changes.plan import get_plan
from civimc_audit.common.codes import OUTCOME_ORDER
from civimc_audit.config import Config


@dataclass
class VerifyResult:
    reconciliation: dict
    plan_id: int | None
    applied: int
    remaining: pd.DataFrame
    lines: list[str] = field(default_factory=list)

    @property
    def needs_person(self) -> bool:
        return not self.remaining.empty

    @property
    def counts(self) -> dict:
        return self.reconciliation["counts"]


def verify(config: Config, plan_id: int | None = None, *, progress: bool = False) -> VerifyResult:
    """Snapshot both sides, reconcile, and check the applied items of a plan (default: the
    newest plan that has been applied)."""
    from civimc_audit.civicrm.reader import snapshot_civicrm
    from civimc_audit.mailchimp.reader import snapshot_mailchimp
    from civimc_audit.reconcile import reconcile
    from civimc_audit.store import open_store

    with open_store(config.store_file) as store:
        civi = snapshot_civicrm(config.civicrm, store, progress=progress)
        mc = snapshot_mailchimp(config.mailchimp, store, progress=progress)
        rec = reconcile(store, config.policy, civicrm_snapshot_id=civi.id,
                        mailchimp_snapshot_id=mc.id)
        if plan_id is None:
            row = store.con.execute("SELECT max(plan_id) FROM journal").fetchone()
            plan_id = row[0]
        remaining = pd.DataFrame(columns=["item_id", "target", "action", "email", "outcome",
                                          "reason"])
        applied = 0
        if plan_id is not None:
            get_plan(store, plan_id)
            applied = store.con.execute(
                "SELECT count(*) FROM journal WHERE plan_id = ? AND state = 'done'",
                [plan_id]).fetchone()[0]
            remaining = store.con.execute(
                """
                WITH j AS (
                    SELECT * FROM journal WHERE plan_id = $1
                    QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY seq DESC) = 1)
                SELECT DISTINCT i.item_id, i.target, i.action, i.email, o.outcome, o.reason
                FROM plan_items i JOIN j USING (item_id)
                -- The same person: the same contact and address where the item names a
                -- contact (an address can be shared by several contacts, a contact can have
                -- several members), else the address (a contact the apply created).
                JOIN outcomes o ON o.reconciliation_id = $2
                     AND lower(trim(o.email)) = lower(trim(i.email))
                     AND (i.contact_id IS NULL OR o.contact_id = i.contact_id)
                WHERE i.plan_id = $1 AND j.state = 'done' AND o.outcome <> 'no_change'
                ORDER BY i.item_id
                """, [plan_id, rec["id"]]).df()
    result = VerifyResult(rec, plan_id, int(applied), remaining)
    todo = {o: n for o, n in rec["counts"].items() if o != "no_change" and n}
    result.lines.append(
        f"verify: reconciliation {rec['id']} of fresh snapshots (civicrm {civi.id}, mailchimp "
        f"{mc.id}): " + (", ".join(f"{o} {todo[o]}" for o in OUTCOME_ORDER if o in todo)
                         or "nothing to do"))
    if plan_id is None:
        result.lines.append("  no plan has been applied yet")
    elif remaining.empty:
        result.lines.append(f"  plan {plan_id}: all {applied} applied items agree on both sides")
    else:
        result.lines.append(f"  plan {plan_id}: {len(remaining)} of {applied} applied items "
                            "still need a change:")
        for r in remaining.to_dict("records"):
            result.lines.append(f"    item {r['item_id']} {r['target']} {r['action']} "
                                f"{r['email']}: now {r['outcome']} — {r['reason']}")
    return result

