"""Standing approvals: what `civimc-audit run --apply` approves, applies and leaves for a person.

`[schedule] auto_approve` names outcome codes a person has approved once and for all (e.g.
`add_to_mailchimp`, `add_to_civicrm_group`). For a run's reconciliation this builds a plan,
approves exactly the items with a listed outcome (reviewer "standing approval (config)"),
freezes it, applies it with execute and verifies. A removal (`remove_from_civicrm_group`,
`unsubscribe_in_mailchimp`) is approved only when its own code is listed; an item in a review
bucket (flagged consent_conflict, duplicate_contacts, contact_deleted, profile_edit_decided or
status_change_unknown) is never approved without a person; every other item stays undecided.
With nothing approvable the plan stays open for review and nothing is sent.

The store is opened only around each step: apply opens its own session (store and
connections) for the whole apply and its verify.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from civimc_audit.changes.verify import VerifyResult
from civimc_audit.changes.plan import ACTIONS, Plan, build_plan, get_plan, items_frame
from civimc_audit.changes.review import decide, freeze
from civimc_audit.common.codes import NEVER_AUTO_APPROVED_FLAGS
from civimc_audit.common.summary import RunSummary, StandingParts, VerifyPart
from civimc_audit.config import Config
from civimc_audit.store import Store

REVIEWER = "standing approval (config)"
NOTE = "[schedule] auto_approve"
RESULTS = ("done", "failed", "stale")
# Flags that put an item in front of a person whatever its outcome: a standing approval was
# given for the routine case, not for someone who asked not to be emailed or a duplicate.
# Nor for a change a profile edit decided, or one whose date evidence is missing
# (profile_edit_decided, status_change_unknown): whether the person changed their mind is a
# person's call.
HELD_FLAGS = ("consent_conflict", "duplicate_contacts", "contact_deleted",
              *NEVER_AUTO_APPROVED_FLAGS)


def approvable_outcomes(auto_approve: tuple[str, ...] | list[str]) -> list[str]:
    """The outcomes whose items may be approved without a person: exactly those listed that
    lead to an action. There is no wildcard or group of codes, so a removal is approved only
    when its own code is listed."""
    return [o for o in ACTIONS if o in set(auto_approve)]


@dataclass
class StandingResult:
    """What a standing-approval apply did; `as_summary()` is what summary.json records."""

    plan: Plan
    approved: int
    applied: dict[str, dict[str, int]] = field(default_factory=dict)
    waiting: dict[str, int] = field(default_factory=dict)
    verify: VerifyResult | None = None
    folder: str | None = None

    @property
    def failed_or_stale(self) -> int:
        return sum(c["failed"] + c["stale"] for c in self.applied.values())

    @property
    def needs_person(self) -> bool:
        """Items that failed or went stale, or applied people who still do not agree (waiting
        items alone are the normal state of standing approvals, not a problem)."""
        return bool(self.failed_or_stale or (self.verify is not None
                                             and self.verify.needs_person))

    def as_summary(self) -> StandingParts:
        verify: VerifyPart | None = None
        if self.verify is not None:
            verify = {"reconciliation_id": self.verify.reconciliation["id"],
                      "outcomes": {k: int(v) for k, v in self.verify.counts.items()},
                      "applied_items_still_needing_a_change": len(self.verify.remaining)}
        return {"plan": {"id": self.plan.id, "hash": self.plan.frozen_hash,
                         "status": self.plan.status, "approved": self.approved},
                "applied": self.applied, "waiting_for_review": self.waiting,
                "verify": verify, "apply_folder": self.folder}


def approve_standing(store: Store, reconciliation_id: int,
                     auto_approve: tuple[str, ...] | list[str]) -> tuple[Plan, int]:
    """Build a plan for the reconciliation and approve its auto-approvable items; freeze it when
    there are any. Returns (plan, number approved)."""
    plan = build_plan(store, reconciliation_id)
    items = items_frame(store, plan.id)
    held = items["flags"].fillna("").str.split().apply(lambda fl: bool(set(fl) & set(HELD_FLAGS)))
    # Interest items are never approved by a standing approval: auto_approve names the
    # subscription group's outcomes, and an interest change is a person's call.
    chosen = items[items["outcome"].isin(approvable_outcomes(auto_approve)) & ~held
                   & items["interest_id"].isna()]
    if chosen.empty:
        return plan, 0
    n = decide(store, plan.id, chosen["item_id"].tolist(), "approved", REVIEWER, note=NOTE,
               via="standing")
    return freeze(store, plan.id, REVIEWER), n


def counts_of(store: Store, plan_id: int) -> tuple[dict, dict]:
    """(applied: action -> {done, failed, stale}, waiting: outcome -> undecided items)."""
    items = items_frame(store, plan_id)
    approved = items[items["decision"] == "approved"]
    applied = {}
    for action, rows in approved.groupby("action"):
        states = rows["journal_state"].fillna("not sent").value_counts()
        applied[action] = {r: int(states.get(r, 0)) for r in RESULTS}
        if states.get("sending") or states.get("not sent"):
            applied[action]["not_finished"] = int(states.get("sending", 0)
                                                  + states.get("not sent", 0))
    undecided = items[items["decision"] == "undecided"]
    # An interest item waits under "interests:<outcome>", apart from the subscription group's.
    keys = undecided["outcome"].where(undecided["interest_id"].isna(),
                                      "interests:" + undecided["outcome"])
    waiting = {o: int(n) for o, n in keys.value_counts().sort_index().items()}
    return applied, waiting


def apply_standing(config: Config, reconciliation_id: int, *, progress: bool = False,
                   on_plan: Callable[[StandingResult], None] | None = None) -> StandingResult:
    """Approve by `[schedule] auto_approve`, freeze, apply with execute, verify.

    `on_plan` is called once the plan is frozen (or found to have nothing approvable), before
    anything is sent, so a caller can record the plan even if the apply then fails.
    """
    from civimc_audit.changes.apply import apply_plan
    from civimc_audit.store import open_store

    with open_store(config.store_file) as store:
        plan, approved = approve_standing(store, reconciliation_id, config.schedule.auto_approve)
        applied, waiting = counts_of(store, plan.id)
    result = StandingResult(plan, approved, applied, waiting)
    if on_plan is not None:
        on_plan(result)
    if not approved:
        return result
    try:
        done = apply_plan(config, plan.id, execute=True, progress=progress, verify_after=True)
        result.verify = done.verify
        result.folder = done.folder.name if done.folder is not None else None
    finally:
        with open_store(config.store_file) as store:
            result.plan = get_plan(store, plan.id)
            result.applied, result.waiting = counts_of(store, plan.id)
    return result


def standing_words(summary: RunSummary) -> list[str]:
    """What was applied and what waits for a person, in sentences, from a run's summary.json."""
    if not summary.get("apply"):
        return ["This run did not apply anything (it ran without `--apply`)."]
    plan = summary.get("plan")
    if plan is None:
        state = str((summary.get("steps") or {}).get("apply", ""))
        if state.startswith("skipped"):
            return [f"Nothing was applied: the apply step was {state}."]
        return ["Nothing was applied: the run stopped before building a plan."]
    lines = []
    applied = summary.get("applied") or {}
    if not plan.get("approved"):
        lines.append(f"Nothing was applied: no item of plan {plan['id']} has an outcome listed in "
                     "[schedule] auto_approve, so nothing was auto-approvable.")
    else:
        parts = []
        for action, c in sorted(applied.items()):
            bits = [f"{c[r]} {r}" for r in RESULTS if c.get(r)]
            if c.get("not_finished"):
                bits.append(f"{c['not_finished']} not finished")
            parts.append(f"{action}: " + ", ".join(bits or ["none sent"]))
        lines.append(f"Applied plan {plan['id']} (standing approval of {plan['approved']} items, "
                     f"sha256 {str(plan.get('hash'))[:12]}…): " + "; ".join(parts) + ".")
        failed = sum(c.get("failed", 0) for c in applied.values())
        stale = sum(c.get("stale", 0) for c in applied.values())
        if failed:
            lines.append(f"{failed} items failed: see the journal in the apply folder "
                         f"{summary.get('apply_folder')}.")
        if stale:
            lines.append(f"{stale} items were skipped as stale (the person changed since the "
                         "snapshot); the next run looks at them again.")
        verify = summary.get("verify")
        if verify:
            left = verify["applied_items_still_needing_a_change"]
            lines.append("Verify (fresh snapshots, reconciliation "
                         f"{verify['reconciliation_id']}): "
                         + ("every applied person agrees on both sides." if not left else
                            f"{left} applied items still need a change."))
    waiting = summary.get("waiting_for_review") or {}
    total = sum(waiting.values())
    if total:
        what = ", ".join(f"{n} {o}" for o, n in waiting.items())
        where = (f"plan {plan['id']} is open: review it with `civimc-audit review`/`approve`"
                 if not plan.get("approved") else
                 "build a plan for them with `civimc-audit plan` (it uses the newest "
                 "reconciliation) and review it")
        lines.append(f"{total} items wait for a person ({what}): {where}.")
    else:
        lines.append("No item waits for a person.")
    return lines
