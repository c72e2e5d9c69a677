"""Retention: prune run folders, apply folders and store snapshots older than `[schedule]
keep_runs_days`.

Guarantees that hold whatever `keep_runs_days` says (even zero, negative or not a number, which
the config refuses anyway): nothing younger than one day is pruned (`MIN_KEEP`); an apply folder
(its snapshot backup and journal.csv) is kept while its plan is not finished, i.e. an approved
item has not reached a final journal state, and when the store does not know its plan; and the
latest complete snapshot of each source is kept.

Never pruned, however old: the latest complete snapshot of each source (the next run and any
reconcile need them), whatever the current run uses, and snapshots a plan still in use refers
to (directly, or through its reconciliation: a change set being reviewed or applied must stay
explainable and appliable). A plan is in use until `keep_runs_days` after its last activity
(made, frozen, or an item journaled by apply); after that it keeps its items and journal but
no longer holds its snapshots, so nightly `run --apply` does not grow the store for ever, and
applying such a plan is refused. A pruned snapshot takes its reconciliations and their outcome
rows with it.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Set
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from civimc_audit.changes.apply import FINAL_STATES
from civimc_audit.common.summary import PrunedPart
from civimc_audit.common.times import parse_run_stamp
from civimc_audit.store import SNAPSHOT_TABLES, Store

MIN_KEEP = timedelta(days=1)

RUN_NAME_RE = re.compile(r"^(\d{8}T\d{6}Z)(?:-\d+)?$")
APPLY_NAME_RE = re.compile(r"^apply-plan(\d+)-(\d{8}T\d{6}Z)$")


def run_time(name: str) -> datetime | None:
    """The UTC start time encoded in a run folder's name (None if it is not a run folder)."""
    m = RUN_NAME_RE.match(name)
    return parse_run_stamp(m.group(1)) if m else None


def run_folders(runs_path: Path) -> list[Path]:
    """Run folders, oldest first."""
    if not runs_path.is_dir():
        return []
    found = [p for p in runs_path.iterdir() if p.is_dir() and run_time(p.name)]
    return sorted(found, key=lambda p: (run_time(p.name), p.name))


def apply_folders(runs_path: Path) -> list[tuple[Path, datetime]]:
    """Apply folders (apply-plan<ID>-<UTC stamp>/, written by apply) with their start time."""
    if not runs_path.is_dir():
        return []
    found = []
    for p in runs_path.iterdir():
        m = APPLY_NAME_RE.match(p.name)
        if m and p.is_dir():
            found.append((p, parse_run_stamp(m.group(2))))
    return sorted(found, key=lambda pair: (pair[1], pair[0].name))


def apply_folder_plan(name: str) -> int:
    """The plan id in an apply folder's name."""
    m = APPLY_NAME_RE.match(name)
    if m is None:
        raise ValueError(f"not an apply folder's name: {name}")
    return int(m.group(1))


def cutoff_for(keep_days: float, now: datetime) -> datetime:
    """Prune what started before this: `keep_days` ago, but never less than `MIN_KEEP` ago
    (zero, negative and NaN mean `MIN_KEEP`; a span longer than a datetime reaches keeps
    everything)."""
    if not keep_days > MIN_KEEP / timedelta(days=1):  # also NaN, which compares false
        return now - MIN_KEEP
    try:
        return now - timedelta(days=keep_days)
    except OverflowError:
        return datetime.min


@dataclass
class Pruned:
    runs: list[str] = field(default_factory=list)
    apply_folders: list[str] = field(default_factory=list)
    snapshots: list[int] = field(default_factory=list)
    reconciliations: list[int] = field(default_factory=list)
    kept_snapshots: dict[int, str] = field(default_factory=dict)  # old but protected: why
    kept_apply_folders: dict[str, str] = field(default_factory=dict)  # old but protected: why

    def as_dict(self) -> PrunedPart:
        return {"runs": self.runs, "apply_folders": self.apply_folders,
                "snapshots": self.snapshots,
                "reconciliations": self.reconciliations,
                "kept_old_snapshots": {str(k): v for k, v in self.kept_snapshots.items()},
                "kept_old_apply_folders": dict(self.kept_apply_folders)}


def unfinished_plans(store: Store) -> dict[int, str]:
    """Plans whose apply folders are evidence still in use, with the reason: an approved item
    not yet in a final journal state (never sent, or sent without an answer recorded)."""
    rows = store.con.execute("""
        WITH d AS (SELECT plan_id, item_id, decision FROM decisions
                   QUALIFY row_number() OVER (PARTITION BY plan_id, item_id ORDER BY seq DESC) = 1),
             j AS (SELECT plan_id, item_id, state FROM journal
                   QUALIFY row_number() OVER (PARTITION BY plan_id, item_id ORDER BY seq DESC) = 1)
        SELECT d.plan_id, count(*) FROM d LEFT JOIN j USING (plan_id, item_id)
        WHERE d.decision = 'approved' AND (j.state IS NULL OR NOT list_contains(?, j.state))
        GROUP BY d.plan_id
    """, [list(FINAL_STATES)]).fetchall()
    return {plan: f"plan {plan} is not finished ({n} approved items not done, failed or stale)"
            for plan, n in rows}


def plan_references(store: Store, active_since: datetime | None = None
                    ) -> tuple[set[int], set[int]]:
    """(snapshot ids, reconciliation ids) referred to by plans; with `active_since`, only by
    plans made, frozen or journaled since then."""
    con = store.con
    rows = con.execute("""
        SELECT reconciliation_id, civicrm_snapshot_id, mailchimp_snapshot_id FROM plans p
        WHERE CAST($since AS TIMESTAMP) IS NULL
           OR greatest(created_at, coalesce(frozen_at, created_at),
                       coalesce((SELECT max(journaled_at) FROM journal j WHERE j.plan_id = p.id),
                                created_at)) >= $since
    """, {"since": active_since}).fetchall()
    recs = {r[0] for r in rows}
    snaps = {i for r in rows for i in r[1:]}
    if recs:
        for civi, mc in con.execute(
                "SELECT civicrm_snapshot_id, mailchimp_snapshot_id FROM reconciliations"
                " WHERE list_contains(?, id)", [sorted(recs)]).fetchall():
            snaps |= {civi, mc}
    return snaps, recs


def protected_snapshots(store: Store, keep: Set[int] = frozenset(),
                        plans_active_since: datetime | None = None) -> dict[int, str]:
    """Snapshot ids that must survive pruning, with the reason."""
    why: dict[int, str] = {i: "used by the current run" for i in keep}
    for source in SNAPSHOT_TABLES:
        latest = store.latest_snapshot(source)
        if latest is not None:
            why[latest.id] = f"latest complete {source} snapshot"
    plan_snaps, _ = plan_references(store, plans_active_since)
    for i in plan_snaps:
        why.setdefault(i, "referred to by a plan")
    return why


def prune_store(store: Store, cutoff: datetime, keep: Set[int] = frozenset(),
                result: Pruned | None = None) -> Pruned:
    """Delete snapshots that started before `cutoff` (except protected ones) and what hangs on
    them, in one transaction."""
    result = result or Pruned()
    protected = protected_snapshots(store, set(keep), plans_active_since=cutoff)
    old = store.con.execute(
        "SELECT id, source FROM snapshots WHERE coalesce(taken_at, started_at) < ? ORDER BY id",
        [cutoff]).fetchall()
    doomed = [(i, src) for i, src in old if i not in protected]
    result.kept_snapshots.update({i: protected[i] for i, _ in old if i in protected})
    if not doomed:
        return result
    ids = [i for i, _ in doomed]
    con = store.con
    with store.transaction():
        recs = [r[0] for r in con.execute(
            "SELECT id FROM reconciliations WHERE list_contains(?, civicrm_snapshot_id)"
            " OR list_contains(?, mailchimp_snapshot_id) ORDER BY id", [ids, ids]).fetchall()]
        if recs:
            con.execute("DELETE FROM outcomes WHERE list_contains(?, reconciliation_id)", [recs])
            con.execute("DELETE FROM interest_outcomes WHERE list_contains(?, reconciliation_id)",
                        [recs])
            con.execute("DELETE FROM reconciliations WHERE list_contains(?, id)", [recs])
        for source in SNAPSHOT_TABLES:
            these = [i for i, src in doomed if src == source]
            if these:
                for table in SNAPSHOT_TABLES[source]:
                    con.execute(f"DELETE FROM {table} WHERE list_contains(?, snapshot_id)",
                                [these])
        con.execute("DELETE FROM mailchimp_evidence WHERE list_contains(?, civicrm_snapshot_id)"
                    " OR list_contains(?, mailchimp_snapshot_id)", [ids, ids])
        con.execute("DELETE FROM snapshots WHERE list_contains(?, id)", [ids])
    result.snapshots += ids
    result.reconciliations += recs
    return result


def protected_apply_folders(store: Store, runs_path: Path) -> dict[str, str]:
    """Apply folder names that must survive pruning, with the reason."""
    unfinished = unfinished_plans(store)
    known = {r[0] for r in store.con.execute("SELECT id FROM plans").fetchall()}
    why = {}
    for folder, _ in apply_folders(runs_path):
        plan = apply_folder_plan(folder.name)
        if plan in unfinished:
            why[folder.name] = unfinished[plan]
        elif plan not in known:
            why[folder.name] = f"plan {plan} is not in the store"
    return why


def prune_runs(runs_path: Path, cutoff: datetime, keep: Set[str] = frozenset(),
               result: Pruned | None = None, protected: dict[str, str] | None = None) -> Pruned:
    """Remove run folders and apply folders whose start (from the folder name) is before
    `cutoff`, except those in `keep` and the `protected` apply folders (see
    `protected_apply_folders`)."""
    result = result or Pruned()
    protected = protected or {}
    for folder in run_folders(runs_path):
        started = run_time(folder.name)
        if folder.name in keep or started is None or started >= cutoff:
            continue
        shutil.rmtree(folder)
        result.runs.append(folder.name)
    # Apply folders (snapshot backups, journal.csv) age like runs once their plan is finished;
    # the journal itself stays in the store with its plan.
    for folder, started in apply_folders(runs_path):
        if folder.name in keep or started >= cutoff:
            continue
        if folder.name in protected:
            result.kept_apply_folders[folder.name] = protected[folder.name]
            continue
        shutil.rmtree(folder)
        result.apply_folders.append(folder.name)
    return result


def prune(store: Store, runs_path: Path, keep_days: float, *, now: datetime,
          keep_runs: Set[str] = frozenset(), keep_snapshots: Set[int] = frozenset()) -> Pruned:
    """Apply the retention to both the runs folder and the store (see the module's
    guarantees)."""
    cutoff = cutoff_for(keep_days, now)
    result = prune_runs(runs_path, cutoff, set(keep_runs),
                        protected=protected_apply_folders(store, runs_path))
    return prune_store(store, cutoff, set(keep_snapshots), result)
