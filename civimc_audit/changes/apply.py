"""Apply a frozen plan to both systems, exactly once.

Only the approved items of a frozen plan whose hash still matches are sent. Every item is
journaled `sending` before its call and `done` / `failed` / `stale` after, each in its own
committed store transaction, so a run killed at any moment leaves a journal that says what
might have happened. The next run settles every `sending` item by reading the current state of
the system it targets (done if the change is there, sent again if not) instead of re-sending
blindly, and never sends an item that is already done, failed or stale.

Before the first change of a run, both snapshots are backed up (Parquet, plus the audience in
Mailchimp's import format) into the run folder. Right before each batch is sent, every person
of that batch changed at either side since its snapshot is skipped as `stale` (drift.py) —
items re-sent after an interrupted run too — and so is every item whose target (the CiviCRM
group, the Mailchimp audience) no longer exists, before anything is written there.

One writer per store at a time, whatever the plan: the store's writer lock (store/lock.py) is
taken before anything else and held to the end, so any other command that writes to the store
(a second apply, a scheduled run, a snapshot, a review import) waits its bounded time and is
refused, changing nothing. The apply then opens one session (the store, CiviCRM's read and
write connections, the Mailchimp client) and hands it to every phase: settling, the drift
check, the writers, the journal and verify. Read-only commands meanwhile read the copy of the
store published when the last writer ended.
"""

from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from civimc_audit.changes.verify import VerifyResult

from civimc_audit.changes.apply_interests import InterestApply, interest_items
from civimc_audit.changes.plan import Plan, get_plan, latest_frozen_plan
from civimc_audit.changes.review import approved_items, check_frozen
from civimc_audit.changes.session import ApplySession
from civimc_audit.common.crashpoints import DIE_ENV, checkpoint
from civimc_audit.common.emails import normalize_email
from civimc_audit.common.files import private_dir
from civimc_audit.common.summary import ApplySummary, write_summary
from civimc_audit.common.times import iso_utc, run_stamp, utcnow
from civimc_audit.config import Config
from civimc_audit.errors import CiviCRMError, MailchimpError, StoreError, UsageError
from civimc_audit.store import Store
from civimc_audit.store.export import backup_snapshots, write_csv
from civimc_audit.store.frames import insert_frame
from civimc_audit.store.lock import StoreLock, writer_lock

MAILCHIMP_CHUNK = 500      # one batch call per journal chunk
CIVICRM_CHUNK = 1000       # journaled together; the writer still commits every CIVICRM_BATCH
COMPLIANCE = "Member In Compliance State"
FINAL_STATES = ("done", "failed", "stale")
__all__ = ["DIE_ENV", "ApplyResult", "apply_plan", "checkpoint", "journal_frame", "load_frozen",
           "tracking_note"]


def tracking_note(plan_id: int) -> str:
    """The tracking text of CiviCRM history rows written for a plan."""
    return f"civimc-audit plan {plan_id}"


@dataclass
class ApplyResult:
    """What one apply did (or, as a dry run, would do); report/apply_results.py puts it in words.

    `items` are the plan's approved items with their journal state (after the run when one
    ran), `to_send` those that were still open before it; `run_id` and `folder` are set only
    when something was sent; `verify` is the VerifyResult of the check afterwards.
    """

    plan: Plan
    execute: bool
    items: pd.DataFrame
    to_send: pd.DataFrame
    run_id: int | None = None
    folder: Path | None = None
    verify: VerifyResult | None = None
    vanished: dict[str, str] = field(default_factory=dict)  # target -> why it is gone

    def counts(self) -> dict[str, int]:
        states = self.items["journal_state"].fillna("not sent")
        return {k: int(v) for k, v in states.value_counts().items()}

    @property
    def needs_person(self) -> bool:
        """Stale or failed items, or applied people still not in agreement."""
        if not self.execute:
            return False
        bad = self.items["journal_state"].isin(["failed", "stale"]).any()
        return bool(bad or (self.verify is not None and self.verify.needs_person))


class _Run:
    """One execution of a plan over a session: journal writes, settling, drift, sending."""

    def __init__(self, session: ApplySession, plan: Plan, run_id: int, progress: bool,
                 snapshots: dict):
        self.session = session
        self.plan = plan
        self.run_id = run_id
        self.progress = progress
        self.snapshots = snapshots
        self.tracking = tracking_note(plan.id)
        self.gone: dict[str, str] = {}  # target -> why it vanished, once found

    # journal ---------------------------------------------------------------------------------
    def journal(self, rows: list[dict]) -> None:
        if not rows:
            return
        frame = pd.DataFrame(rows).reindex(columns=["item_id", "state", "sent", "title",
                                                    "detail"])
        frame["item_id"] = frame["item_id"].astype(int)
        for col in ("sent", "title", "detail"):
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None)
        with self.session.store.transaction() as con:
            insert_frame(con, "journal", frame, ["plan_id", "item_id", "run_id", "state",
                                                 "journaled_at", "sent", "title", "detail"],
                         select="?, item_id, ?, state, ?, sent, title, detail",
                         params=[self.plan.id, self.run_id, utcnow()])

    def sending(self, items: pd.DataFrame, payloads: list[dict] | None = None,
                title: str | None = None, detail: str | None = None) -> None:
        payloads = payloads or [json.loads(p) for p in items["payload"]]
        self.journal([{"item_id": i, "state": "sending", "sent": json.dumps(p, sort_keys=True),
                       "title": title, "detail": detail}
                      for i, p in zip(items["item_id"], payloads, strict=True)])

    # settling interrupted items --------------------------------------------------------------
    def settle(self, items: pd.DataFrame, sent: dict[int, dict]) -> pd.DataFrame:
        """Journal `sending` items whose change is already made as done; returns the rest."""
        if items.empty:
            return items
        interest = interest_items(items)
        if interest.any():
            done, resend = InterestApply(self).settle(items[interest], sent)
            self.journal(done)
            rest = self.settle(items[~interest], sent)
            return items[items["item_id"].isin(resend) | items["item_id"].isin(rest["item_id"])]
        mc = items[items["target"] == "mailchimp"]
        groups = items[(items["target"] == "civicrm") & (items["action"] != "create_contact")]
        new = items[items["action"] == "create_contact"]
        done, resend = self._settle_mailchimp(mc, sent)
        group_done, group_resend = self._settle_groups(groups)
        new_done, new_resend, trashed = self._settle_created(new)
        self.journal(done + group_done + new_done)
        self.journal(trashed)
        return items[items["item_id"].isin(resend + group_resend + new_resend)]

    def _settle_mailchimp(self, items: pd.DataFrame, sent: dict[int, dict]
                          ) -> tuple[list[dict], list[int]]:
        """(done rows, ids to send again): done when the member has the status sent."""
        from civimc_audit.mailchimp.live import member_statuses

        if items.empty:
            return [], []
        done, resend = [], []
        now = member_statuses(self.session.mailchimp, self.plan.target_list, list(items["member_id"]))
        for row in items.to_dict("records"):
            wanted = sent.get(row["item_id"], json.loads(row["payload"]))["status"]
            if now.get(row["member_id"]) == wanted:
                done.append(_settled(row, f"{wanted} at Mailchimp (confirmed after an "
                                          "interrupted run)"))
            else:
                resend.append(row["item_id"])
        return done, resend

    def _settle_groups(self, items: pd.DataFrame) -> tuple[list[dict], list[int]]:
        """(done rows, ids to send again): done when the contact's group status is the wanted one."""
        if items.empty:
            return [], []
        done, resend = [], []
        ids = [int(c) for c in items["contact_id"]]
        now = self.session.civicrm.group_statuses(self.plan.target_group, ids)
        for row in items.to_dict("records"):
            status = now.get(int(row["contact_id"]))
            made = status == "Added" if row["action"] == "add_to_group" else status != "Added"
            if made:
                done.append(_settled(row, f"group status {status or 'none'} in CiviCRM "
                                          "(confirmed after an interrupted run)"))
            else:
                resend.append(row["item_id"])
        return done, resend

    def _settle_created(self, items: pd.DataFrame) -> tuple[list[dict], list[int], list[dict]]:
        """(done rows, ids to send again, stale rows) for interrupted contact creations.

        Only a contact this plan created counts (its source note names the plan); one made by
        someone else meanwhile is drift, found when the item is re-sent. A created contact not
        yet in the group is added now.
        """
        from civimc_audit.civicrm.writer import source_note

        if items.empty:
            return [], [], []
        ours = self.session.civicrm.contacts_created_by(self.plan.target_group,
                                                        source_note(self.tracking))
        done, resend, trashed, late_adds = [], [], [], []
        for row in items.to_dict("records"):
            found = ours.get(normalize_email(row["email"]), [])
            added = [cid for cid, status in found if status == "Added"]
            if any(status == "trashed" for _, status in found):
                # Someone put the contact this plan created in the trash: never again.
                trashed.append({"item_id": row["item_id"], "state": "stale",
                                "title": "changed since the snapshot",
                                "detail": "the contact this plan created was trashed in "
                                          "CiviCRM: left for a new audit"})
            elif added:
                done.append(_settled(row, f"contact {added[0]} in the group (confirmed "
                                          "after an interrupted run)"))
            elif found:
                late_adds.append((row, min(cid for cid, _ in found)))
            else:
                resend.append(row["item_id"])
        if late_adds:
            self._finish_created(late_adds)
        return done, resend, trashed

    def _finish_created(self, pairs: list[tuple[dict, int]]) -> None:
        """Contacts created by an interrupted run but not yet added: add them now."""
        self.session.civicrm_writer.add_to_group(self.plan.target_group, [cid for _, cid in pairs],
                                                 self.tracking)
        self.journal([_settled(row, f"contact {cid} created and added to the group")
                      for row, cid in pairs])

    # drift -----------------------------------------------------------------------------------
    def vanished(self, items: pd.DataFrame) -> pd.DataFrame:
        """Journal as stale the items of a side that no longer exists — the CiviCRM group
        deleted or made smart, the Mailchimp audience deleted —, those sent there and those
        decided by what that side said (a contact's group state, a member's status); returns
        the rest. Nothing is written for them, so no contact is created for a group that is
        gone."""
        from civimc_audit.mailchimp.live import audience_exists

        if items.empty:
            return items
        civi = (items["target"] == "civicrm") | items["contact_id"].notna()
        mc = (items["target"] == "mailchimp") | items["member_id"].notna()
        if civi.any() and "civicrm" not in self.gone:
            problem = self.session.civicrm.group_problem(self.plan.target_group)
            if problem:
                self.gone["civicrm"] = problem
        if (mc.any() and "mailchimp" not in self.gone
                and not audience_exists(self.session.mailchimp, self.plan.target_list)):
            self.gone["mailchimp"] = (f"the Mailchimp audience {self.plan.target_list} no "
                                      "longer exists")
        hit = pd.Series(None, index=items.index, dtype=object)
        for side, mask in (("mailchimp", mc), ("civicrm", civi)):
            if side in self.gone:
                hit = hit.where(~mask | hit.notna(), self.gone[side])
        gone = items[hit.notna()]
        self.journal([{"item_id": i, "state": "stale", "title": "target no longer exists",
                       "detail": f"{why}: nothing was sent"}
                      for i, why in zip(gone["item_id"], hit[hit.notna()], strict=True)])
        return items[hit.isna()]

    def drift(self, items: pd.DataFrame) -> pd.DataFrame:
        """Journal as stale the items whose target vanished and the people changed at either
        side since the snapshots; returns the rest.

        Run right before each batch is sent, over exactly that batch (fresh items, or re-sent
        after an interrupted run), so a change made while this apply runs, between two of its
        batches, is found too; see drift.py for what counts as a change.
        """
        from civimc_audit.changes.drift import civicrm_drift, cutoff, moved_members
        from civimc_audit.mailchimp.live import member_statuses

        items = self.vanished(items)
        if items.empty:
            return items
        store, snapshots = self.session.store, self.snapshots
        members = items["member_id"].dropna().tolist()
        changed = (self.session.mailchimp_writer(self.plan.target_list).changed_members(
            cutoff(snapshots["mailchimp"])) if members else {})
        moved = moved_members(store, snapshots["mailchimp"].id, changed, members)
        # A member deleted since the snapshot is in no listing of changes: each member the
        # plan was made from is looked up.
        had = items[items["mailchimp_status"].notna()]["member_id"].dropna().tolist()
        deleted = {mid for mid, status in member_statuses(
            self.session.mailchimp, self.plan.target_list, had).items() if status is None}
        ids = sorted({int(c) for c in items["contact_id"].dropna()})
        civi_changed = (civicrm_drift(self.session.civicrm, store, snapshots["civicrm"].id,
                                      self.plan.target_group, ids, cutoff(snapshots["civicrm"]),
                                      self.tracking) if ids else {})
        new = items[items["action"] == "create_contact"]
        owners = (self.session.civicrm.contacts_owning(self.plan.target_group, list(new["email"]))
                  if not new.empty else {})
        mc_changed = {mid: m["last_changed"] for mid, m in changed.items()}
        stale = []
        for row in items.to_dict("records"):
            why = _drift_reasons(row, mc_changed, moved, civi_changed, owners, deleted)
            if why:
                stale.append({"item_id": row["item_id"], "state": "stale",
                              "title": "changed since the snapshot",
                              "detail": "; ".join(why) + ": left for a new audit"})
        self.journal(stale)
        gone = {s["item_id"] for s in stale}
        return items[~items["item_id"].isin(gone)]

    # sending ---------------------------------------------------------------------------------
    def send_mailchimp(self, items: pd.DataFrame) -> None:
        if items.empty:
            return
        writer = self.session.mailchimp_writer(self.plan.target_list)
        bar = tqdm(total=len(items), desc="Mailchimp", unit=" members", disable=not self.progress)
        for start in range(0, len(items), MAILCHIMP_CHUNK):
            chunk = self.drift(items.iloc[start:start + MAILCHIMP_CHUNK])
            if not chunk.empty:
                payloads = [json.loads(p) for p in chunk["payload"]]
                refused = self._mailchimp_call(writer, chunk, payloads)
                if refused is not None and not refused.empty:
                    pending = [{**json.loads(p), "status": "pending"} for p in refused["payload"]]
                    self._mailchimp_call(writer, refused, pending, title=COMPLIANCE,
                                         detail="refused as subscribed; re-sent as pending "
                                                "(Mailchimp emails a confirmation request)")
            bar.update(min(MAILCHIMP_CHUNK, len(items) - start))
        bar.close()

    def _mailchimp_call(self, writer, chunk: pd.DataFrame, payloads: list[dict], **note):
        """One batch call between its two journal writes; returns compliance refusals to re-send
        as pending (only when the plan was frozen with that option)."""
        self.sending(chunk, payloads, **note)
        checkpoint("mailchimp_before_call")
        try:
            results = writer.batch_update(payloads, update_existing=True)
        except MailchimpError as exc:
            raise MailchimpError(f"apply stopped: {exc}; {len(chunk)} items are journaled as "
                                 "sending: run apply again to settle them and go on") from None
        checkpoint("mailchimp_after_call")
        by_email = {normalize_email(r.email_address): r for r in results}
        rows, refused, unknown = [], [], None
        for row, payload in zip(chunk.to_dict("records"), payloads, strict=True):
            r = by_email.get(normalize_email(payload["email_address"]))
            if r is not None and not r.ok and getattr(r, "final", True) is False:
                # The call failed as a whole (no answer, 429/5xx after retries): the change
                # may or may not have been made, so the item stays `sending` for the next run.
                unknown = unknown or r
                continue
            if r is None:
                rows.append({"item_id": row["item_id"], "state": "failed",
                             "title": "no result", "detail": "Mailchimp's answer did not name "
                                                             "this member"})
            elif r.ok:
                rows.append({"item_id": row["item_id"], "state": "done",
                             "detail": f"{r.status} at Mailchimp"
                                       + (" (confirmation email sent)" if r.status == "pending"
                                          else "")})
            elif r.title == COMPLIANCE and self.plan.allow_pending and _may_go_pending(row):
                refused.append(row["item_id"])
            else:
                rows.append({"item_id": row["item_id"], "state": "failed", "title": r.title,
                             "detail": r.detail})
        self.journal(rows)
        checkpoint("mailchimp_after_journal")
        if unknown is not None:
            raise MailchimpError(f"apply stopped: a Mailchimp batch call failed ({unknown.title}: "
                                 f"{unknown.detail}); its items are journaled as sending: run "
                                 "apply again to settle them and go on")
        return chunk[chunk["item_id"].isin(refused)]

    def send_civicrm(self, items: pd.DataFrame) -> None:
        if items.empty:
            return
        w = self.session.civicrm_writer
        bar = tqdm(total=len(items), desc="CiviCRM", unit=" contacts", disable=not self.progress)
        for action in ("remove_from_group", "add_to_group", "create_contact"):
            todo = items[items["action"] == action]
            for start in range(0, len(todo), CIVICRM_CHUNK):
                chunk = self.drift(todo.iloc[start:start + CIVICRM_CHUNK])
                if action == "create_contact":
                    for _, row in chunk.iterrows():
                        self._create(w, row)
                elif not chunk.empty:
                    self._civicrm_call(w, action, chunk)
                bar.update(min(CIVICRM_CHUNK, len(todo) - start))
        bar.close()

    def _civicrm_call(self, w, action: str, chunk: pd.DataFrame) -> None:
        ids = [int(c) for c in chunk["contact_id"]]
        self.sending(chunk)
        checkpoint("civicrm_before_call")
        held: set[int] = set()
        try:
            if action == "remove_from_group":
                held = self._hold_cleaned(w, chunk)
            result = getattr(w, action)(self.plan.target_group, ids, self.tracking)
        except CiviCRMError as exc:
            self._settle_failed(chunk, str(exc))
            return
        checkpoint("civicrm_after_call")
        rows = []
        for i, cid in zip(chunk["item_id"], ids, strict=True):
            outcome = result.get(cid, "done")
            if outcome == "missing":
                rows.append({"item_id": i, "state": "failed", "title": "contact missing",
                             "detail": f"contact {cid} no longer exists in CiviCRM or is in the trash"})
            else:
                note = "; email put on hold (cleaned at Mailchimp)" if cid in held else ""
                rows.append({"item_id": i, "state": "done",
                             "detail": f"{outcome} in CiviCRM{note}"})
        self.journal(rows)
        checkpoint("civicrm_after_journal")

    def _hold_cleaned(self, w, chunk: pd.DataFrame) -> set[int]:
        """With `[civicrm] on_hold_when_cleaned`, put the address of each person leaving the
        group because Mailchimp cleaned it on hold for that contact, as the sync's webhook
        does. Done before the removal: both are idempotent, so a crash between them is settled
        by sending the item again. Returns the contacts whose rows were put on hold."""
        if not self.session.config.civicrm.on_hold_when_cleaned:
            return set()
        held = set()
        cleaned = chunk[chunk["mailchimp_status"] == "cleaned"]
        for cid, email in zip(cleaned["contact_id"], cleaned["email"], strict=True):
            if isinstance(email, str) and email and w.put_on_hold(email, int(cid)):
                held.add(int(cid))
        return held

    def _create(self, w, row) -> None:
        payload = json.loads(row["payload"])
        frame = row.to_frame().T
        self.sending(frame)
        checkpoint("civicrm_before_call")
        try:
            cid = w.create_contact(payload["email"], payload.get("first_name"),
                                   payload.get("last_name"), tracking=self.tracking,
                                   group_id=self.plan.target_group)
            w.add_to_group(self.plan.target_group, [cid], self.tracking)
        except CiviCRMError as exc:
            self._settle_failed(frame, str(exc))
            return
        checkpoint("civicrm_after_call")
        self.journal([{"item_id": row["item_id"], "state": "done",
                       "detail": f"contact {cid} created and added to the group"}])

    def _settle_failed(self, chunk: pd.DataFrame, error: str) -> None:
        """A database error: what is in place anyway is done, the rest failed with the error."""
        left = self.settle(chunk, {})
        self.journal([{"item_id": i, "state": "failed", "title": "CiviCRM database error",
                       "detail": error} for i in left["item_id"]])


def _may_go_pending(row: dict) -> bool:
    """Only what reviewers saw flagged as needing a confirmation email may be re-sent as
    pending: a resubscribe of an unsubscribed member (flag needs_confirmation)."""
    return row["action"] == "resubscribe" and "needs_confirmation" in (row["flags"] or "").split()


def _settled(row: dict, detail: str) -> dict:
    return {"item_id": row["item_id"], "state": "done", "detail": detail}


def _drift_reasons(row: dict, mc_changed: dict, moved: dict, civi_changed: dict,
                   owners: dict, deleted: set) -> list[str]:
    """Why the person of an item changed since the snapshots (empty when they did not)."""
    why = []
    if row["member_id"] in moved:
        why.append(f"email changed at Mailchimp to {moved[row['member_id']]}")
    elif row["member_id"] in deleted:
        why.append("the Mailchimp member no longer exists")
    elif row["member_id"] and row["member_id"] in mc_changed:
        when = mc_changed[row["member_id"]]
        why.append(f"changed at Mailchimp on {when:%Y-%m-%d %H:%M:%S}Z" if when is not None
                   else "changed at Mailchimp (on a date it did not say)")
    if not pd.isna(row["contact_id"]) and int(row["contact_id"]) in civi_changed:
        why.append(civi_changed[int(row["contact_id"])])
    if row["action"] == "create_contact" and owners.get(normalize_email(row["email"])):
        why.append("a CiviCRM contact with this email exists since the snapshot")
    return why


def _start_run(store: Store, plan: Plan, folder: Path) -> int:
    """Record a new run of the plan (apply_runs); returns its id."""
    with store.transaction() as con:
        return con.execute(
            "INSERT INTO apply_runs (plan_id, started_at, execute, pid, host, folder, status)"
            " VALUES (?, ?, true, ?, ?, ?, 'running') RETURNING id",
            [plan.id, utcnow(), os.getpid(), socket.gethostname(), str(folder)]).fetchone()[0]


def _finish_run(store: Store, run_id: int, status: str, counts: dict) -> None:
    with store.transaction() as con:
        con.execute("UPDATE apply_runs SET finished_at = ?, status = ?, counts = ? WHERE id = ?",
                    [utcnow(), status, json.dumps(counts), run_id])


def _latest_sent(store: Store, plan_id: int) -> dict[int, dict]:
    rows = store.con.execute(
        "SELECT item_id, sent FROM journal WHERE plan_id = ? AND state = 'sending'"
        " QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY seq DESC) = 1",
        [plan_id]).fetchall()
    return {int(i): json.loads(s) for i, s in rows if s}


def load_frozen(store: Store, plan_id: int | None) -> Plan:
    """The frozen plan to apply, refused when retention pruned its snapshots (said first: the
    hash covers them, so it no longer matches either) or when it no longer matches its hash."""
    plan = get_plan(store, plan_id) if plan_id is not None else latest_frozen_plan(store)
    if plan.frozen:
        _snapshots_of(store, plan)
    check_frozen(store, plan)
    return plan


def _snapshots_of(store: Store, plan: Plan) -> dict:
    try:
        return {"civicrm": store.snapshot(plan.civicrm_snapshot_id),
                "mailchimp": store.snapshot(plan.mailchimp_snapshot_id)}
    except StoreError:
        raise UsageError(
            f"plan {plan.id} can no longer be applied: retention pruned its snapshots "
            "([schedule] keep_runs_days after its last use); take fresh snapshots and make "
            "a new plan") from None


def apply_plan(config: Config, plan_id: int | None = None, *, execute: bool = False,
               progress: bool = False, verify_after: bool = True) -> ApplyResult:
    """Dry-run (default) or execute a frozen plan; see the module docstring for the guarantees.

    The store's writer lock is held throughout, dry runs included (store/lock.py)."""
    with writer_lock(config, "apply", plan=plan_id) as lock, \
            ApplySession.open(config) as session:
        store = session.store
        plan = load_frozen(store, plan_id)
        lock.update(plan=plan.id)
        items = approved_items(store, plan.id)
        snapshots = _snapshots_of(store, plan)
        open_items = items[~items["journal_state"].isin(FINAL_STATES)]
        result = ApplyResult(plan, execute, items=items, to_send=open_items)
        if not execute or open_items.empty:
            return result
        _execute(session, lock, result, snapshots, progress)
        # A target that is gone cannot be snapshotted again: its items are stale already.
        if verify_after and not result.vanished:
            from civimc_audit.changes.verify import verify_in

            result.verify = verify_in(session, plan.id, progress=progress)
        return result


def _execute(session: ApplySession, lock: StoreLock, result: ApplyResult, snapshots: dict,
             progress: bool) -> None:
    """Send the open items of `result` in a new run, recorded in its folder and apply_runs."""
    store, plan, open_items = session.store, result.plan, result.to_send
    sent = _latest_sent(store, plan.id)
    folder = session.config.runs_path / f"apply-plan{plan.id}-{run_stamp()}"
    private_dir(folder)
    run_id = _start_run(store, plan, folder)
    lock.update(plan=plan.id, run=run_id)
    result.run_id, result.folder = run_id, folder
    run = _Run(session, plan, run_id, progress, snapshots)
    status = "failed"
    try:
        backup_snapshots(store, [plan.civicrm_snapshot_id, plan.mailchimp_snapshot_id],
                         folder / "backup")
        # Items of a target that is gone are not settled: nothing more is written there.
        interrupted = run.vanished(open_items[open_items["journal_state"] == "sending"])
        resend = run.settle(interrupted, sent)
        # Re-sent items are checked like fresh ones, batch by batch as they are sent: what was
        # not made may have changed since.
        todo = pd.concat([resend, open_items[open_items["journal_state"].isna()]]
                         ).sort_values("item_id")
        # Interest items go after every subscription item (apply_interests.py).
        interest = interest_items(todo)
        subscription = todo[~interest]
        run.send_mailchimp(subscription[subscription["target"] == "mailchimp"])
        run.send_civicrm(subscription[subscription["target"] == "civicrm"])
        if interest.any():
            InterestApply(run).send(todo[interest])
        status = "finished"
    finally:
        result.vanished = dict(run.gone)
        result.items = approved_items(store, plan.id)
        _finish_run(store, run_id, status, result.counts())
        _write_run_files(result)


def _write_run_files(result: ApplyResult) -> None:
    if result.folder is None or result.items is None or result.run_id is None:
        return
    cols = ["item_id", "target", "action", "email", "contact_id", "decision", "reviewer",
            "journal_state", "journal_title", "journal_detail", "payload"]
    write_csv(result.items[cols], result.folder / "journal.csv")
    summary: ApplySummary = {"plan": result.plan.id, "run": result.run_id,
                             "sha256": result.plan.frozen_hash, "counts": result.counts(),
                             "finished_at": iso_utc(utcnow())}
    write_summary(result.folder, summary)


def journal_frame(store: Store, plan_id: int) -> pd.DataFrame:
    """Every journal row of a plan, oldest first (the notebook's table)."""
    return store.con.execute(
        "SELECT j.seq, j.run_id, j.item_id, i.target, i.action, i.email, j.state,"
        " j.journaled_at, j.title, j.detail FROM journal j JOIN plan_items i"
        " ON i.plan_id = j.plan_id AND i.item_id = j.item_id WHERE j.plan_id = ?"
        " ORDER BY j.seq", [plan_id]).df()
