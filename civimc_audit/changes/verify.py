"""Verify: fresh snapshots of both sides, a new reconciliation, and every applied item whose
person still needs a change. After a fully approved plan is applied the systems converge and
this reports nothing left.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from civimc_audit.changes.plan import get_plan
from civimc_audit.changes.session import ApplySession
from civimc_audit.config import Config
from civimc_audit.store import Store, scalar
from civimc_audit.store.lock import writer_lock

REMAINING_COLUMNS = ["item_id", "target", "action", "email", "outcome", "reason"]


@dataclass
class VerifyResult:
    """What a verify found; report/apply_results.py puts it in words.

    `reconciliation` is the new reconciliation of the fresh snapshots (its snapshot ids
    included), `plan_id` the plan checked (None when none was applied yet), `applied` how many
    of its items are done, `remaining` those whose person still needs a change.
    """

    reconciliation: dict
    plan_id: int | None
    applied: int
    remaining: pd.DataFrame
    # Interest rows of the fresh reconciliation that would change something, per outcome
    # (`outcomes --interests`). Applied interest items still to change are in `remaining`; the
    # rest (never planned or approved) are reported and do not make verify fail.
    interests: dict[str, int] = field(default_factory=dict)

    @property
    def needs_person(self) -> bool:
        return not self.remaining.empty

    @property
    def counts(self) -> dict:
        return self.reconciliation["counts"]


def verify(config: Config, plan_id: int | None = None, *, progress: bool = False) -> VerifyResult:
    """Snapshot both sides, reconcile, and check the applied items of a plan (default: the
    newest plan that has been applied)."""
    with writer_lock(config, "verify", plan=plan_id), ApplySession.open(config) as session:
        return verify_in(session, plan_id, progress=progress)


def verify_in(session: ApplySession, plan_id: int | None = None, *,
              progress: bool = False) -> VerifyResult:
    """`verify` over an open session (an apply's, at its end)."""
    from civimc_audit.civicrm.reader import snapshot_civicrm
    from civimc_audit.mailchimp.activity import gather_evidence
    from civimc_audit.mailchimp.reader import snapshot_mailchimp
    from civimc_audit.reconcile import evidence_needed, interest_counts, reconcile

    config, store = session.config, session.store
    civi = snapshot_civicrm(config.civicrm, store, progress=progress,
                            conn=session.civicrm.connection(), interests=config.interests)
    mc = snapshot_mailchimp(config.mailchimp, store, progress=progress, client=session.mailchimp)
    if civi.status == mc.status == "complete":  # date evidence, as after `snapshot`
        ids = evidence_needed(store, config.policy, civicrm_snapshot_id=civi.id,
                              mailchimp_snapshot_id=mc.id)
        gather_evidence(session.mailchimp, store, config.mailchimp.list_id, civi.id, mc.id, ids)
    rec = reconcile(store, config.policy, civicrm_snapshot_id=civi.id,
                    mailchimp_snapshot_id=mc.id)
    if plan_id is None:
        plan_id = scalar(store.con, "SELECT max(plan_id) FROM journal")
    interests = {o: n for o, n in interest_counts(store, rec["id"]).items() if o != "no_change"}
    if plan_id is None:
        return VerifyResult(rec, None, 0, pd.DataFrame(columns=REMAINING_COLUMNS), interests)
    get_plan(store, plan_id)
    applied = scalar(store.con, "SELECT count(*) FROM journal WHERE plan_id = ? AND state = 'done'",
                     [plan_id])
    return VerifyResult(rec, plan_id, int(applied), _remaining(store, plan_id, rec["id"]),
                        interests)


def _remaining(store: Store, plan_id: int, reconciliation_id: int) -> pd.DataFrame:
    """The plan's done items whose person the reconciliation still gives an outcome."""
    return store.con.execute(
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
          AND i.interest_id IS NULL
        UNION ALL
        -- An interest item: the same person (as above) and interest still to change.
        SELECT DISTINCT i.item_id, i.target, i.action, i.email, io.outcome, io.reason
        FROM plan_items i JOIN j USING (item_id)
        JOIN interest_outcomes io ON io.reconciliation_id = $2 AND io.interest_id = i.interest_id
        JOIN outcomes o ON o.reconciliation_id = $2 AND o.person_id = io.person_id
             AND lower(trim(o.email)) = lower(trim(i.email))
             AND (i.contact_id IS NULL OR o.contact_id = i.contact_id)
        WHERE i.plan_id = $1 AND j.state = 'done' AND io.outcome <> 'no_change'
        ORDER BY item_id
        """, [plan_id, reconciliation_id]).df()
