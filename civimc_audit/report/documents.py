"""The `--json` documents: one JSON object per command, built from the library's typed results.

Each document has the same keys every time (README "JSON output" lists them); a value that is
missing is null, never "" (so a script tests one thing), dates are ISO 8601 UTC with a Z, and
flags are a list of codes. The CLI prints them with `dump`.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime

import pandas as pd

from civimc_audit.changes.apply import ApplyResult
from civimc_audit.changes.plan import PlanSummary
from civimc_audit.changes.verify import VerifyResult
from civimc_audit.check import CheckEntry, CheckResult
from civimc_audit.common.codes import OUTCOME_ORDER
from civimc_audit.store import Snapshot

ITEM_KEYS = ["item_id", "target", "action", "email", "contact_id", "state", "title", "detail"]
REMAINING_KEYS = ["item_id", "target", "action", "email", "outcome", "reason"]


def dump(document: dict) -> str:
    """The document as indented JSON text (UTF-8 kept as is)."""
    return json.dumps(document, indent=2, ensure_ascii=False)


def value(v):
    """One value as JSON wants it: null for None/NaN/NA/"", ISO 8601 Z for dates, plain ints."""
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, str):
        return v if v != "" else None
    if isinstance(v, (pd.Timestamp, datetime)):
        return f"{v:%Y-%m-%dT%H:%M:%SZ}"
    if isinstance(v, date):
        return v.isoformat()
    if hasattr(v, "item"):  # numpy scalars
        return value(v.item())
    return v


def flags(v) -> list[str]:
    """A space-separated flags cell as a list (empty when there are none)."""
    v = value(v)
    return v.split() if isinstance(v, str) else []


def records(frame: pd.DataFrame, keys: list[str]) -> list[dict]:
    """The frame's rows as dicts of exactly `keys` (absent columns null), values cleaned."""
    rows = frame.reindex(columns=keys).astype(object).to_dict("records")
    return [{k: (flags(r[k]) if k == "flags" else value(r[k])) for k in keys} for r in rows]


# check -------------------------------------------------------------------------------------------
def check_document(result: CheckResult, line) -> dict:
    """{"ok", "error", "checks": [{"name", "status", "message", "facts"}]}; `line` words an
    entry (the same sentence `check` prints)."""
    error = result.error
    return {"ok": error is None,
            "error": None if error is None else str(error),
            "checks": [_check_entry(e, line) for e in result.entries]}


def _check_entry(entry: CheckEntry, line) -> dict:
    if entry.status == "error":
        return {"name": entry.name, "status": "error", "message": str(entry.error), "facts": {}}
    return {"name": entry.name, "status": entry.status, "message": line(entry),
            "facts": {k: value(v) for k, v in entry.facts.items()}}


# snapshot ----------------------------------------------------------------------------------------
def snapshot_document(civicrm: Snapshot | None, mailchimp: Snapshot | None,
                      warnings: list[str]) -> dict:
    """{"civicrm": snapshot or null, "mailchimp": snapshot or null, "warnings": [...]}."""
    return {"civicrm": _snapshot(civicrm), "mailchimp": _snapshot(mailchimp),
            "warnings": list(warnings)}


def _snapshot(snap: Snapshot | None) -> dict | None:
    if snap is None:
        return None
    return {"id": snap.id, "source": snap.source, "status": snap.status,
            "started_at": value(snap.started_at), "taken_at": value(snap.taken_at),
            "message": value(snap.message), "mode": value(snap.meta.get("mode")),
            "row_counts": {k: int(v) for k, v in snap.row_counts.items()}}


# outcomes ----------------------------------------------------------------------------------------
def outcomes_document(reconciliation: dict, outcome: str | None, frame: pd.DataFrame,
                      columns: list[str]) -> dict:
    """{"reconciliation_id", "civicrm_snapshot_id", "mailchimp_snapshot_id", "outcome" (the
    filter or null), "count", "rows": [one object per person with `columns`]}."""
    return {"reconciliation_id": reconciliation["id"],
            "civicrm_snapshot_id": reconciliation["civicrm_snapshot_id"],
            "mailchimp_snapshot_id": reconciliation["mailchimp_snapshot_id"],
            "outcome": outcome, "count": len(frame), "rows": records(frame, columns)}


# plan --------------------------------------------------------------------------------------------
def plan_document(summary: PlanSummary, *, built: bool) -> dict:
    """The plan's registry row, its counts per action, and whether this command built it."""
    plan = summary.plan
    # With interest items (only then): how many, and how many remove someone from an interest.
    interests = ({"interest_items": summary.interest_items,
                  "interest_removals": summary.interest_removals}
                 if summary.interest_items else {})
    return {"plan_id": plan.id, "built": built, "status": plan.status,
            "reconciliation_id": plan.reconciliation_id,
            "civicrm_snapshot_id": plan.civicrm_snapshot_id,
            "mailchimp_snapshot_id": plan.mailchimp_snapshot_id,
            "group_id": value(plan.group_id), "list_id": value(plan.list_id),
            "created_at": value(plan.created_at), "frozen_at": value(plan.frozen_at),
            "frozen_by": value(plan.frozen_by), "frozen_hash": value(plan.frozen_hash),
            "frozen_reviewers": list(plan.frozen_reviewers),
            "allow_pending": bool(plan.allow_pending),
            "items": summary.items, "removals": summary.removals, "flagged": summary.flagged,
            **interests, "actions": summary.actions}


# apply / verify ----------------------------------------------------------------------------------
def apply_document(result: ApplyResult) -> dict:
    """What an apply did (or, dry, would do): every approved item with its journal state (null
    when not sent), counts per state, and the verify afterwards (null when none ran)."""
    items = result.items.rename(columns={"journal_state": "state", "journal_title": "title",
                                         "journal_detail": "detail"})
    return {"plan_id": result.plan.id, "plan_hash": value(result.plan.frozen_hash),
            "execute": result.execute, "run_id": value(result.run_id),
            "folder": None if result.folder is None else str(result.folder),
            "approved_items": len(result.items), "to_send": len(result.to_send),
            "counts": result.counts(), "needs_person": result.needs_person,
            "items": records(items, ITEM_KEYS),
            "verify": None if result.verify is None else verify_document(result.verify)}


def verify_document(result: VerifyResult) -> dict:
    """The fresh reconciliation (every outcome counted, zeros included) and the applied items
    whose person still needs a change."""
    rec = result.reconciliation
    return {"reconciliation_id": rec["id"], "civicrm_snapshot_id": rec["civicrm_snapshot_id"],
            "mailchimp_snapshot_id": rec["mailchimp_snapshot_id"],
            "outcomes": {o: int(rec["counts"].get(o, 0)) for o in OUTCOME_ORDER},
            "plan_id": result.plan_id, "applied": int(result.applied),
            "needs_person": result.needs_person,
            "remaining": records(result.remaining, REMAINING_KEYS)}
