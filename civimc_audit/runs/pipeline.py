"""The scheduled pipeline behind `civimc-audit run`: a record a scheduler can trust.

One run = lock → snapshot both sides → reconcile → check the `[schedule]` thresholds → (with
`--apply` and no threshold crossed: standing approvals, see standing.py) → execute
notebooks/audit.ipynb with papermill → prune old runs and snapshots → rebuild runs/index.html.
Everything lands in runs/<UTC timestamp>/ (audit.ipynb, audit.html, summary.json), and
summary.json is rewritten after every step, so even a run that fails — or is killed — leaves a
folder saying how far it got. When a step fails the notebook is still executed: its first cell
shows the steps and stops with the failure, so the record shows where it failed.

The outcome is an exit code (errors.py): 0 ok, 1 a threshold was crossed or (with --apply) an
applied item failed or went stale (NeedsPerson),
2 configuration or usage, 3 a source system failed; the same one-line reason is in
summary.json's `message` and on stderr.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from civimc_audit import __version__
from civimc_audit.common.codes import INTEREST_OUTCOME_ORDER, OUTCOME_ORDER
from civimc_audit.common.summary import (
    SUMMARY_NAME,
    ChangesSincePrevious,
    OutcomeChange,
    RunSummary,
    new_run_summary,
    read_summary,
    write_summary,
)
from civimc_audit.common.times import iso_utc, utcnow
from civimc_audit.config import (
    Config,
    ScheduleSettings,
    one_line,
    redact,
)
from civimc_audit.errors import (
    EXIT_OK,
    CivimcError,
    ConfigError,
    NeedsPerson,
    RunFailed,
    exit_code_for,
)
from civimc_audit.runs.index import build_index
from civimc_audit.runs.retention import prune, run_folders
from civimc_audit.runs.section import refresh_run_section
from civimc_audit.runs.show import show_run  # noqa: F401  (the notebook's name, kept here too)
from civimc_audit.store import Store, open_store, scalar
from civimc_audit.store.lock import writer_lock

STEPS = ("snapshot_civicrm", "snapshot_mailchimp", "reconcile", "thresholds", "apply", "report",
         "prune", "index")
REMOVALS = ("remove_from_civicrm_group", "unsubscribe_in_mailchimp")
# Interest rows that take someone out of a mapped group (I4) or clear their interest (I6).
INTEREST_REMOVALS = ("remove_from_civicrm_group", "clear_interest_in_mailchimp")

NO_AUTO_APPROVE = ("`run --apply` applies only what [schedule] auto_approve lists, and it lists "
                   "nothing; add outcome codes to it (e.g. auto_approve = [\"add_to_mailchimp\"])"
                   " or run without --apply")




def iso(when: datetime | None) -> str | None:
    return None if when is None else iso_utc(when)


# thresholds -----------------------------------------------------------------------------------
def evaluate_thresholds(schedule: ScheduleSettings, counts: dict, group_size: int,
                        snapshot_ages: dict[str, float],
                        interests: dict | None = None) -> tuple[dict, list[str]]:
    """Each configured threshold with its value, and one phrase per threshold crossed;
    `interests` are the interest rows per outcome (max_interest_removals)."""
    interest_removals = sum((interests or {}).get(o, 0) for o in INTEREST_REMOVALS)
    limit = schedule.max_interest_removals
    removals = sum(counts.get(o, 0) for o in REMOVALS)
    # Removals out of an empty group (e.g. all Mailchimp-side) count as 100%.
    percent = round(100.0 * removals / group_size, 2) if group_size else float(bool(removals)) * 100
    cannot = counts.get("cannot_sync", 0)
    oldest_side = max(snapshot_ages, key=lambda side: snapshot_ages[side]) if snapshot_ages else None
    oldest = snapshot_ages.get(oldest_side, 0.0) if oldest_side else 0.0
    checks = {
        "max_removals": (schedule.max_removals, removals,
                         schedule.max_removals is not None and removals > schedule.max_removals,
                         f"{removals} removals > max_removals {schedule.max_removals}"),
        "max_removal_percent": (
            schedule.max_removal_percent, percent,
            schedule.max_removal_percent is not None and percent > schedule.max_removal_percent,
            f"removals are {percent:g}% of the group's {group_size} > max_removal_percent "
            f"{schedule.max_removal_percent}"),
        "fail_on_cannot_sync": (schedule.fail_on_cannot_sync, cannot,
                                bool(schedule.fail_on_cannot_sync) and cannot > 0,
                                f"{cannot} cannot_sync (fail_on_cannot_sync)"),
        "max_snapshot_age_hours": (
            schedule.max_snapshot_age_hours, round(oldest, 3),
            schedule.max_snapshot_age_hours is not None
            and oldest > schedule.max_snapshot_age_hours,
            f"{oldest_side} snapshot is {oldest:.1f} hours old > max_snapshot_age_hours "
            f"{schedule.max_snapshot_age_hours}"),
        "max_interest_removals": (
            limit, interest_removals, limit is not None and interest_removals > limit,
            f"{interest_removals} interest removals > max_interest_removals {limit}"),
    }
    table = {name: {"limit": limit, "value": value, "crossed": crossed}
             for name, (limit, value, crossed, _) in checks.items()}
    crossed = [phrase for (_, _, hit, phrase) in checks.values() if hit]
    return table, crossed


def _interest_counts(store: Store, reconciliation_id: int) -> dict[str, int] | None:
    """Interest rows per outcome (every outcome, zeros included), None when none is mapped."""
    from civimc_audit.reconcile import interest_counts

    snap_id = scalar(store.con, "SELECT civicrm_snapshot_id FROM reconciliations WHERE id = ?",
                     [reconciliation_id])
    if not store.snapshot(snap_id).meta.get("interest_groups"):
        return None
    counts = interest_counts(store, reconciliation_id)
    return {o: int(counts.get(o, 0)) for o in INTEREST_OUTCOME_ORDER}


# changes since the previous run -----------------------------------------------------------------
def previous_run(runs_path: Path) -> tuple[str, RunSummary] | None:
    """The newest run that got as far as a reconciliation."""
    for folder in reversed(run_folders(runs_path)):
        summary = read_summary(folder)
        if summary.get("reconciliation_id") and isinstance(summary.get("outcomes"), dict):
            return folder.name, summary
    return None


PERSON_KEY = ("coalesce(lower(trim(email)), 'contact:' || CAST(contact_id AS VARCHAR))")


def changes_since(store: Store, previous: tuple[str, RunSummary] | None, rid: int,
                  counts: dict) -> ChangesSincePrevious | None:
    """Outcome counts against the previous run, and (while its reconciliation is still in the
    store) how many people changed outcome, appeared or disappeared."""
    if previous is None:
        return None
    name, prev = previous
    before = prev.get("outcomes") or {}
    outcomes: dict[str, OutcomeChange] = {
        o: {"previous": before.get(o, 0), "now": counts.get(o, 0),
            "change": counts.get(o, 0) - before.get(o, 0)}
        for o in sorted(set(before) | set(counts))}
    prev_rid = prev["reconciliation_id"]
    assert prev_rid is not None, "previous_run returns only runs with a reconciliation"
    result: ChangesSincePrevious = {"previous_run": name, "previous_reconciliation_id": prev_rid,
                                    "outcomes": outcomes, "people": None}
    if scalar(store.con, "SELECT count(*) FROM reconciliations WHERE id = ?", [prev_rid]):
        row = store.con.execute(f"""
            WITH a AS (SELECT {PERSON_KEY} AS k, string_agg(outcome, ' ' ORDER BY outcome) AS o
                       FROM outcomes WHERE reconciliation_id = ? GROUP BY 1),
                 b AS (SELECT {PERSON_KEY} AS k, string_agg(outcome, ' ' ORDER BY outcome) AS o
                       FROM outcomes WHERE reconciliation_id = ? GROUP BY 1)
            SELECT count(*) FILTER (WHERE a.k IS NOT NULL AND b.k IS NOT NULL AND a.o <> b.o),
                   count(*) FILTER (WHERE a.k IS NULL),
                   count(*) FILTER (WHERE b.k IS NULL)
            FROM a FULL OUTER JOIN b ON a.k = b.k""", [prev_rid, rid]).fetchone()
        assert row is not None, "an aggregate without GROUP BY returns one row"
        result["people"] = {"changed_outcome": row[0], "new": row[1], "gone": row[2]}
    return result


# the run ------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    folder: Path
    summary: RunSummary
    error: BaseException | None = None

    @property
    def status(self) -> str:
        return self.summary["status"]

    @property
    def message(self) -> str:
        return self.summary["message"]

    @property
    def exit_code(self) -> int:
        code = self.summary.get("exit_code")
        return EXIT_OK if code is None else code


def _snapshot_mailchimp(config: Config, store: Store, progress: bool):
    """A Mailchimp snapshot: incremental on top of the previous complete one (the reader falls
    back to a full read when there is none). Returns (snapshot, mode)."""
    from civimc_audit.mailchimp.reader import snapshot_mailchimp

    snap = snapshot_mailchimp(config.mailchimp, store, progress=progress, incremental=True)
    return snap, snap.meta.get("mode", "full")


@dataclass
class ScheduledRun:
    """One scheduled run; `execute()` never raises for a failed step (it records it)."""

    config: Config
    apply: bool = False
    reuse_snapshots: bool = False
    progress: bool = False
    on_warning: Callable[[str], None] | None = None
    folder: Path | None = None
    summary: RunSummary = field(default_factory=RunSummary)
    error: BaseException | None = None
    _started: float = 0.0

    # bookkeeping ---------------------------------------------------------------------------
    @property
    def run_folder(self) -> Path:
        """The run's folder (made by `execute` before any step)."""
        if self.folder is None:
            raise RuntimeError("the run has no folder yet: execute() makes it")
        return self.folder

    def write_summary(self) -> None:
        write_summary(self.run_folder, self.summary, scrub=redact)

    def _step(self, name: str, fn, *, record_failure: bool = True):
        self.summary["steps"][name] = "running"
        self.write_summary()
        t0 = time.monotonic()
        try:
            result = fn()
        except Exception as exc:
            self.summary["durations"][name] = round(time.monotonic() - t0, 3)
            self.summary["steps"][name] = "failed"
            if record_failure:
                self._fail(name, exc)
            self.write_summary()
            raise
        self.summary["durations"][name] = round(time.monotonic() - t0, 3)
        self.summary["steps"][name] = "ok"
        self.write_summary()
        return result

    def _fail(self, name: str, exc: BaseException) -> None:
        """Record the run's first failure: status, the step, the exit code and one line."""
        if self.error is not None:
            return
        self.error = exc
        code = exc.exit_code if isinstance(exc, CivimcError) else exit_code_for(exc)
        detail = str(exc) if isinstance(exc, CivimcError) else f"{type(exc).__name__}: {exc}"
        self.summary.update({"status": "failed", "failed_step": name, "exit_code": code,
                             "message": one_line(f"{name} failed: {detail}")})

    def _skip(self, name: str, why: str) -> None:
        self.summary["steps"][name] = f"skipped ({why})"

    # steps ---------------------------------------------------------------------------------
    def _snapshots(self) -> None:
        from civimc_audit.civicrm.reader import snapshot_civicrm

        if self.reuse_snapshots:
            self._skip("snapshot_civicrm", "--reuse-snapshots")
            self._skip("snapshot_mailchimp", "--reuse-snapshots")
            return

        def civicrm():
            with open_store(self.config.store_file) as store:
                return snapshot_civicrm(self.config.civicrm, store, progress=self.progress,
                                        interests=self.config.interests)

        civi = self._step("snapshot_civicrm", civicrm)
        self.summary["snapshots"]["civicrm"] = {"id": civi.id, "mode": "full"}

        def mailchimp():
            from civimc_audit.runs.evidence import take_evidence

            with open_store(self.config.store_file) as store:
                snap, mode = _snapshot_mailchimp(self.config, store, self.progress)
                if snap.status == "complete" and civi.status == "complete":
                    take_evidence(self.config, store, civi.id, snap.id,  # date evidence
                                  progress=self.progress)
                return snap, mode

        mc, mode = self._step("snapshot_mailchimp", mailchimp)
        self.summary["snapshots"]["mailchimp"] = {"id": mc.id, "mode": mode}

    def _reconcile(self) -> None:
        from civimc_audit.reconcile import reconcile

        previous = previous_run(self.config.runs_path)

        def go():
            with open_store(self.config.store_file) as store:
                ids = {side: (self.summary["snapshots"].get(side) or {}).get("id")
                       for side in ("civicrm", "mailchimp")}
                rec = reconcile(store, self.config.policy, civicrm_snapshot_id=ids["civicrm"],
                                mailchimp_snapshot_id=ids["mailchimp"])
                counts = {o: int(rec["counts"].get(o, 0)) for o in OUTCOME_ORDER}
                reasons = dict(store.con.execute(
                    "SELECT reason_code, count(*) FROM outcomes WHERE reconciliation_id = ?"
                    " AND reason_code <> '' GROUP BY 1 ORDER BY 1", [rec["id"]]).fetchall())
                group_size = scalar(
                    store.con, "SELECT count(*) FROM outcomes WHERE reconciliation_id = ?"
                    " AND civicrm_status = 'Added'", [rec["id"]])
                snaps = {}
                for side in ("civicrm", "mailchimp"):
                    snap = store.snapshot(rec[f"{side}_snapshot_id"])
                    mode = (self.summary["snapshots"].get(side) or {}).get("mode", "reused")
                    snaps[side] = {"id": snap.id, "taken_at": iso(snap.taken_at), "mode": mode,
                                   "_taken_at": snap.taken_at}
                changes = changes_since(store, previous, rec["id"], counts)
                interests = _interest_counts(store, rec["id"])
            return rec, counts, reasons, group_size, snaps, changes, interests

        rec, counts, reasons, group_size, snaps, changes, interests = self._step("reconcile", go)
        self._taken = {side: s.pop("_taken_at") for side, s in snaps.items()}
        self.summary.update({"reconciliation_id": rec["id"], "outcomes": counts,
                             "reasons": reasons, "interests": interests,
                             "group_size": group_size, "snapshots": snaps,
                             "changes_since_previous": changes})

    def _thresholds(self) -> None:
        def go():
            now = utcnow()
            ages = {side: (now - taken).total_seconds() / 3600
                    for side, taken in self._taken.items()}
            for side, age in ages.items():
                self.summary["snapshots"][side]["age_hours"] = round(age, 3)
            counts, group_size = self.summary["outcomes"], self.summary["group_size"]
            assert counts is not None and group_size is not None, "set by the reconcile step"
            removals = sum(counts.get(o, 0) for o in REMOVALS)
            table, crossed = evaluate_thresholds(self.config.schedule, counts, group_size, ages,
                                                 self.summary.get("interests"))
            self.summary["thresholds"] = table
            self.summary["removals"] = removals
            if crossed:
                self.summary.update({
                    "status": "threshold", "exit_code": NeedsPerson.exit_code,
                    "message": one_line("threshold crossed: " + "; ".join(crossed))})
            else:
                total = sum(counts.values())
                self.summary.update({
                    "status": "ok", "exit_code": EXIT_OK,
                    "message": f"{total} people, {removals} removals, "
                               f"{counts.get('cannot_sync', 0)} cannot sync; no threshold crossed"})

        self._step("thresholds", go)

    def _apply(self) -> None:
        """Standing approvals (standing.py): only after the thresholds held."""
        from civimc_audit.changes.standing import apply_standing

        if self.summary["status"] == "threshold":
            self._skip("apply", "threshold crossed: nothing applied")
            self.summary["message"] += "; nothing applied"
            self.write_summary()
            return

        def record(result) -> None:
            self.summary.update(result.as_summary())
            self.write_summary()

        def go():
            rid = self.summary["reconciliation_id"]
            assert rid is not None, "set by the reconcile step"
            return apply_standing(self.config, rid,
                                  progress=self.progress, on_plan=record)

        try:
            result = self._step("apply", go)
        finally:
            self._record_plan_after_failure()
        record(result)
        self._after_apply(result)

    def _record_plan_after_failure(self) -> None:
        """If apply stopped midway, the journal still says what was done: count it."""
        plan = self.summary.get("plan")
        if plan is None or self.summary["steps"]["apply"] != "failed":
            return
        from civimc_audit.changes.standing import counts_of


        with contextlib.suppress(Exception), open_store(self.config.store_file) as store:
            applied, waiting = counts_of(store, plan["id"])
            self.summary.update({"applied": applied, "waiting_for_review": waiting})
            self.write_summary()

    def _after_apply(self, result) -> None:
        waiting = sum(result.waiting.values())
        if not result.approved:
            self.summary["message"] += (f"; nothing auto-approvable, nothing applied; "
                                        f"{waiting} items wait for review")
        else:
            done = sum(c["done"] for c in result.applied.values())
            self.summary["message"] += (f"; applied {done} of {result.approved} auto-approved "
                                        f"items; {waiting} wait for review")
        if result.needs_person:
            left = len(result.verify.remaining) if result.verify is not None else 0
            self.summary.update({
                "status": "needs_person", "exit_code": NeedsPerson.exit_code,
                "message": self.summary["message"]
                + f"; {result.failed_or_stale} applied items failed or went stale, "
                  f"{left} still disagree after verify"})
        self.write_summary()

    def _report(self) -> None:
        from civimc_audit.report.audit import run_report

        expected_failure = self.error is not None

        def go():
            try:
                run_report(self.config, reconciliation_id=self.summary.get("reconciliation_id"),
                           folder=self.folder, parameters={"run_dir": str(self.folder)})
            except CivimcError:
                if not expected_failure:
                    raise
            # run_report writes its own summary.json; this run's is the one that counts.
            self.write_summary()

        self._step("report", go, record_failure=not expected_failure)

    def _housekeeping(self) -> None:
        keep_days = self.config.schedule.keep_runs_days
        if keep_days is None:
            self._skip("prune", "no keep_runs_days")
            return

        def go():
            with open_store(self.config.store_file) as store:
                keep = {s["id"] for s in self.summary["snapshots"].values() if s.get("id")}
                pruned = prune(store, self.config.runs_path, keep_days, now=utcnow(),
                               keep_runs={self.run_folder.name}, keep_snapshots=keep)
            self.summary["pruned"] = pruned.as_dict()

        self._step("prune", go)

    # the whole run -------------------------------------------------------------------------
    def execute(self) -> RunResult:
        from civimc_audit.report.audit import new_run_folder

        if self.apply and not self.config.schedule.auto_approve:
            raise ConfigError(NO_AUTO_APPROVE)
        self._started = time.monotonic()
        runs_path = self.config.runs_path
        with writer_lock(self.config, "run"):
            self.folder = new_run_folder(runs_path)
            self.summary = new_run_summary(
                self.folder.name, started_at=iso_utc(utcnow()), version=__version__, steps=STEPS,
                apply=self.apply, reuse_snapshots=self.reuse_snapshots, warnings=[])
            if not self.apply:
                self._skip("apply", "no --apply")
            self.write_summary()
            try:
                self._pipeline(runs_path)
            except BaseException as exc:  # a signal or Ctrl-C: say so before going down
                self._interrupted(exc)
                raise
        return RunResult(self.folder, self.summary, self.error)

    def _interrupted(self, exc: BaseException) -> None:
        why, code = type(exc).__name__, 130
        if isinstance(exc, SystemExit) and isinstance(exc.code, int) and exc.code > 128:
            with contextlib.suppress(ValueError):
                why, code = signal.Signals(exc.code - 128).name, exc.code
        self.error = exc
        self.summary.update({"status": "failed", "failed_step": "interrupted", "exit_code": code,
                             "message": f"run interrupted by {why}", "finished_at": iso(utcnow())})
        for name, state in self.summary["steps"].items():
            if state in ("pending", "running"):
                self.summary["steps"][name] = "interrupted" if state == "running" else "skipped"
        self.write_summary()

    def _pipeline(self, runs_path: Path) -> None:
        try:
            self._snapshots()
            self._reconcile()
            self._thresholds()
            if self.apply:
                self._apply()
        except Exception as exc:  # recorded by _step; the report still shows it
            self._fail("pipeline", exc)
        for name, fn in (("report", self._report), ("prune", self._housekeeping)):
            try:
                fn()
            except Exception as exc:
                self._fail(name, exc)
        for name in STEPS:
            if self.summary["steps"][name] == "pending":
                self._skip(name, "an earlier step failed")
        self.summary["finished_at"] = iso(utcnow())
        self.summary["durations"]["total"] = round(time.monotonic() - self._started, 3)
        self.write_summary()
        try:
            self._step("index", lambda: build_index(runs_path, current=self.run_folder.name))
        except Exception as exc:
            self._fail("index", exc)
            self.write_summary()
        try:  # the report showed the steps while they ran: now every one has its final state
            refresh_run_section(self.run_folder, self.summary)
        except Exception as exc:
            self._fail("report", exc)
            self.write_summary()


def run_scheduled(config: Config, *, apply: bool = False, reuse_snapshots: bool = False,
                  progress: bool = False,
                  on_warning: Callable[[str], None] | None = None) -> RunResult:
    """Run the pipeline; returns the result when all is well, else raises the one-line reason
    with its exit code (NeedsPerson for a threshold, RunFailed for a failed step) after the
    run's folder, summary.json and index are written."""
    result = ScheduledRun(config, apply=apply, reuse_snapshots=reuse_snapshots,
                          progress=progress, on_warning=on_warning).execute()
    raise_for_status(result)
    return result


def raise_for_status(result: RunResult) -> None:
    """Turn a finished run's status into the exception whose exit code the CLI returns."""
    if result.status in ("threshold", "needs_person"):
        raise NeedsPerson(result.message)
    if result.status == "failed":
        raise RunFailed(result.message, result.exit_code)


def run_in_notebook(config_path: str, *, apply: bool = False,
                    reuse_snapshots: bool = False) -> RunSummary:
    """notebooks/run.ipynb (for Airflow's PapermillOperator and other notebook schedulers):
    exactly `civimc-audit run`. Shows where the record is, then raises — failing the notebook
    and the task — whenever the CLI would exit non-zero; returns summary.json's contents."""
    from html import escape

    from IPython.display import HTML, display

    from civimc_audit.config import NOTEBOOK_CONFIG_HINT, load_config

    # Messages can quote Mailchimp's error details or people's emails: shown as text, escaped.
    config = load_config(config_path, hint=NOTEBOOK_CONFIG_HINT)
    result = ScheduledRun(config, apply=apply, reuse_snapshots=reuse_snapshots,
                          on_warning=lambda m: display(HTML(f"<p><b>Warning:</b> {escape(m)}</p>"))
                          ).execute()
    display(HTML(f"<p>Run <b>{escape(result.folder.name)}</b>: <b>{escape(result.status)}</b> — "
                 f"{escape(result.message)}</p><ul>"
                 f"<li>report: <code>{escape(str(result.folder / 'audit.html'))}</code></li>"
                 f"<li>summary: <code>{escape(str(result.folder / SUMMARY_NAME))}</code></li>"
                 f"<li>all runs: <code>{escape(str(config.runs_path / 'index.html'))}</code></li>"
                 "</ul>"))
    if apply:
        from civimc_audit.changes.standing import standing_words

        display(HTML("<ul>" + "".join(f"<li>{escape(line)}</li>"
                                      for line in standing_words(result.summary)) + "</ul>"))
    raise_for_status(result)
    return result.summary
