"""summary.json: the one definition of what a run folder's record says, and how it is written and
read.

A scheduled run (runs/pipeline.py) writes a `RunSummary` with every key (README, "Reading
summary.json"), rewriting it after each step; `civimc-audit report` alone writes the part it
knows (status, message, version, durations and the reconciliation's counts); the index and the
next run read them back. An apply folder's summary.json is a different, smaller record
(`ApplySummary`). The types live here, below every stage, because the report and the apply stage
write them too.

The JSON is `indent=2` with a trailing newline; key order is the order the writers build.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

from civimc_audit.common.files import write_atomic

SUMMARY_NAME = "summary.json"


class SnapshotPart(TypedDict, total=False):
    """One side's snapshot as the run used it."""

    id: int
    taken_at: str  # ISO-8601 UTC, common.times.iso_utc
    mode: str  # full, incremental or reused
    age_hours: float  # at the threshold check


class Threshold(TypedDict):
    limit: Any  # the configured limit (None when unset)
    value: Any
    crossed: bool


class OutcomeChange(TypedDict):
    previous: int
    now: int
    change: int


class PeopleChange(TypedDict):
    changed_outcome: int
    new: int
    gone: int


class ChangesSincePrevious(TypedDict):
    previous_run: str
    previous_reconciliation_id: int
    outcomes: dict[str, OutcomeChange]
    people: PeopleChange | None  # None once the previous reconciliation is pruned


class PlanPart(TypedDict):
    id: int
    hash: str | None  # the frozen plan's sha256
    status: str
    approved: int


class VerifyPart(TypedDict):
    reconciliation_id: int
    outcomes: dict[str, int]
    applied_items_still_needing_a_change: int


class StandingParts(TypedDict):
    """What a standing-approval apply adds to a run's summary (changes/standing.py)."""

    plan: PlanPart
    applied: dict[str, dict[str, int]]  # action -> done/failed/stale (and not_finished)
    waiting_for_review: dict[str, int]  # outcome -> undecided items
    verify: VerifyPart | None
    apply_folder: str | None


class PrunedPart(TypedDict):
    runs: list[str]
    apply_folders: list[str]
    snapshots: list[int]
    reconciliations: list[int]
    kept_old_snapshots: dict[str, str]  # snapshot id -> why it was kept
    kept_old_apply_folders: dict[str, str]  # folder name -> why it was kept


class RunSummary(TypedDict, total=False):
    """A run folder's summary.json. A scheduled run writes every key (`new_run_summary`);
    `civimc-audit report` alone writes status, message, version, durations,
    reconciliation_id, outcomes, reasons and snapshots."""

    run: str
    status: str  # running, ok, threshold, needs_person, failed (interrupted: index only)
    message: str
    exit_code: int | None
    failed_step: str | None
    started_at: str | None
    finished_at: str | None
    version: str
    apply: bool
    reuse_snapshots: bool
    steps: dict[str, str]
    durations: dict[str, float]
    reconciliation_id: int | None
    outcomes: dict[str, int] | None
    reasons: dict[str, int] | None
    interests: dict[str, int] | None  # interest rows per outcome; None when none is mapped
    group_size: int | None
    removals: int | None
    thresholds: dict[str, Threshold] | None
    changes_since_previous: ChangesSincePrevious | None
    snapshots: dict[str, SnapshotPart]
    plan: PlanPart | None
    applied: dict[str, dict[str, int]] | None
    waiting_for_review: dict[str, int] | None
    verify: VerifyPart | None
    apply_folder: str | None
    pruned: PrunedPart | None
    warnings: list[str]


class ApplySummary(TypedDict):
    """An apply folder's summary.json (apply-plan<ID>-<stamp>/, changes/apply.py)."""

    plan: int
    run: int  # the apply run's id (journal.run_id)
    sha256: str | None
    counts: dict[str, int]
    finished_at: str


def new_run_summary(run: str, *, started_at: str, version: str, steps: tuple[str, ...],
                    apply: bool, reuse_snapshots: bool, warnings: list[str]) -> RunSummary:
    """A scheduled run's summary before its first step: every key, in the order written."""
    return {
        "run": run, "status": "running", "message": "run in progress",
        "exit_code": None, "failed_step": None, "started_at": started_at,
        "finished_at": None, "version": version,
        "apply": apply, "reuse_snapshots": reuse_snapshots,
        "steps": {s: "pending" for s in steps}, "durations": {},
        "reconciliation_id": None, "outcomes": None, "reasons": None, "interests": None,
        "group_size": None, "removals": None, "thresholds": None,
        "changes_since_previous": None, "snapshots": {}, "plan": None, "applied": None,
        "waiting_for_review": None, "verify": None, "apply_folder": None,
        "pruned": None, "warnings": list(warnings),
    }


def to_json(summary: RunSummary | ApplySummary) -> str:
    """The file's text (values JSON cannot hold, such as a datetime, as their str())."""
    return json.dumps(summary, indent=2, default=str) + "\n"


def from_json(text: str) -> RunSummary:
    """A summary.json's contents (ValueError if it is not JSON)."""
    return json.loads(text)


def write_summary(folder: Path, summary: RunSummary | ApplySummary, *,
                  scrub: Callable[[str], str] | None = None) -> Path:
    """Replace folder/summary.json in one step; `scrub` (config.redact) cleans the text first."""
    text = to_json(summary)
    return write_atomic(folder / SUMMARY_NAME, scrub(text) if scrub else text)


def read_summary(folder: Path) -> RunSummary:
    """A run's summary.json, or a stand-in saying why there is none."""
    try:
        return from_json((folder / SUMMARY_NAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"status": "failed", "message": "no summary.json (the run was interrupted)"}
    except ValueError:
        return {"status": "failed", "message": "summary.json is not valid JSON"}
