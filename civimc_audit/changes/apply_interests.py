"""Apply's interest items (DESIGN "Interest groups"): one person's change in one mapped interest.

They are sent after every subscription item of the run, so the subscription items are checked
and sent exactly as without interests. A Mailchimp item PATCHes the member's one interest
(nothing else: its status stays the subscription items' business); a CiviCRM item sets the
contact's status in the mapped group as core writes it (group_contact row and a history row
with the plan's tracking note, the CiviCRMWriter's group write). Same journal as every item:
`sending` before the call, `done` / `failed` / `stale` after; a run killed in between is settled
by reading the member's interests or the contact's status in that group.

Right before each batch, an item is `stale` when its person changed since the snapshots:
- the person's subscription item in this plan was not applied (the interest rows assume the
  person stays subscribed: nothing is changed for someone whose subscription change was
  rejected, failed or went stale);
- at Mailchimp, a member this plan has not written changed since the snapshot (last_changed),
  or the member's status or interests now differ from the snapshot's with this plan's own
  writes laid over them;
- in CiviCRM, the contact changed in the mapped group (history other than this plan's, its
  status there) or in what decides whether it may be synced (drift.civicrm_drift).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pandas as pd

from civimc_audit.common.crashpoints import checkpoint
from civimc_audit.common.emails import normalize_email
from civimc_audit.errors import CiviCRMError, MailchimpError

if TYPE_CHECKING:
    from civimc_audit.changes.apply import _Run

INTEREST_CHUNK = 100  # items journaled together (Mailchimp: one PATCH each)
_REMOVE = "remove_from_interest_group"


def interest_items(items: pd.DataFrame) -> pd.Series:
    """Which rows of an items frame are interest items."""
    if "interest_id" not in items:
        return pd.Series(False, index=items.index)
    return items["interest_id"].notna()


class InterestApply:
    """The interest items of one run (`run` gives the session, plan, journal and tracking)."""

    def __init__(self, run: _Run):
        self.run = run
        self._created: dict[str, int | None] | None = None

    @property
    def session(self):
        return self.run.session

    @property
    def plan(self):
        return self.run.plan

    # contacts the plan created -----------------------------------------------------------
    def contact_of(self, row: dict) -> int | None:
        """The contact an item writes to: its own, or the one this plan created for the
        address (R3); None when there is none."""
        if not pd.isna(row["contact_id"]):
            return int(row["contact_id"])
        if self._created is None:
            from civimc_audit.civicrm.writer import source_note

            found = self.session.civicrm.contacts_created_by(self.plan.target_group,
                                                             source_note(self.run.tracking))
            self._created = {email: min((cid for cid, s in rows if s == "Added"), default=None)
                             for email, rows in found.items()}
        return self._created.get(normalize_email(row["email"] or ""))

    # settling ----------------------------------------------------------------------------
    def settle(self, items: pd.DataFrame, sent: dict[int, dict]) -> tuple[list[dict], list[int]]:
        """(done rows, ids to send again) for interest items an interrupted run left sending."""
        from civimc_audit.mailchimp.live import member_interests

        done: list[dict] = []
        resend: list[int] = []
        mc = items[items["target"] == "mailchimp"]
        if not mc.empty:
            now = member_interests(self.session.mailchimp, self.plan.target_list,
                                   list(mc["member_id"]))
            for row in mc.to_dict("records"):
                wanted = sent.get(row["item_id"], json.loads(row["payload"]))["interests"]
                have = now.get(row["member_id"], (None, {}))[1]
                if all(have.get(k, False) == v for k, v in wanted.items()):
                    done.append(_done(row, "interest set at Mailchimp (confirmed after an "
                                           "interrupted run)"))
                else:
                    resend.append(row["item_id"])
        for row in items[items["target"] == "civicrm"].to_dict("records"):
            cid = self.contact_of(row)
            status = (self.session.civicrm.group_statuses(int(row["civicrm_group_id"]), [cid])
                      .get(cid) if cid is not None else None)
            made = status != "Added" if row["action"] == _REMOVE else status == "Added"
            if cid is not None and made:
                done.append(_done(row, f"status {status or 'none'} in the CiviCRM group "
                                       "(confirmed after an interrupted run)"))
            else:
                resend.append(row["item_id"])
        return done, resend

    # drift -------------------------------------------------------------------------------
    def drift(self, items: pd.DataFrame) -> pd.DataFrame:
        """Journal as stale the interest items whose person changed (see the module
        docstring); returns the rest."""
        items = self.run.vanished(items)
        if items.empty:
            return items
        why: dict[int, list[str]] = {int(i): [] for i in items["item_id"]}
        for item_id, reason in self._unapplied(items).items():
            why[item_id].append(reason)
        for item_id, reason in self._mailchimp_drift(items).items():
            why[item_id].append(reason)
        for item_id, reason in self._civicrm_drift(items).items():
            why[item_id].append(reason)
        stale = [{"item_id": i, "state": "stale", "title": "changed since the snapshot",
                  "detail": "; ".join(r) + ": left for a new audit"} for i, r in why.items() if r]
        self.run.journal(stale)
        return items[~items["item_id"].isin({s["item_id"] for s in stale})]

    def _unapplied(self, items: pd.DataFrame) -> dict[int, str]:
        """Items whose person has a subscription item in this plan that is not done."""
        rows = self.session.store.con.execute(
            """
            WITH j AS (SELECT item_id, state FROM journal WHERE plan_id = $1
                       QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY seq DESC) = 1)
            SELECT DISTINCT i.person_id FROM plan_items i LEFT JOIN j USING (item_id)
            WHERE i.plan_id = $1 AND i.interest_id IS NULL AND coalesce(j.state, '') <> 'done'
              AND i.person_id IN (SELECT unnest($2))
            """, [self.plan.id, sorted({int(p) for p in items["person_id"]})]).fetchall()
        people = {int(r[0]) for r in rows}
        return {int(i): "the person's subscription change in this plan was not applied"
                for i, p in zip(items["item_id"], items["person_id"], strict=True)
                if int(p) in people}

    def _expected_members(self, member_ids: list[str]) -> dict[str, tuple[str | None, dict]]:
        """member id -> (status, interests) as the snapshot had them with what this plan sent
        the member (items done) laid over, oldest first."""
        store = self.session.store
        out: dict[str, tuple[str | None, dict]] = {}
        for mid, status, interests in store.con.execute(
                "SELECT id, status, interests FROM mailchimp_member WHERE snapshot_id = ?"
                " AND id IN (SELECT unnest(?))",
                [self.plan.mailchimp_snapshot_id, member_ids]).fetchall():
            out[mid] = (status, {str(k): bool(v) for k, v in json.loads(interests or "{}").items()})
        sent = {int(i): json.loads(p) for i, p in store.con.execute(
            "SELECT item_id, sent FROM journal WHERE plan_id = ? AND state = 'sending'"
            " AND sent IS NOT NULL"
            " QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY seq DESC) = 1",
            [self.plan.id]).fetchall()}
        for item_id, mid in store.con.execute(
                """
                WITH j AS (SELECT item_id, state, seq FROM journal WHERE plan_id = $1
                           QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY seq DESC) = 1)
                SELECT i.item_id, i.member_id FROM plan_items i JOIN j USING (item_id)
                WHERE i.plan_id = $1 AND i.target = 'mailchimp' AND j.state = 'done'
                  AND i.member_id IN (SELECT unnest($2)) ORDER BY j.seq
                """, [self.plan.id, member_ids]).fetchall():
            payload = sent.get(int(item_id), {})
            status, interests = out.get(mid, (None, {}))
            out[mid] = (payload.get("status", status),
                        {**interests, **payload.get("interests", {})})
        return out

    def _written_members(self, member_ids: list[str]) -> set[str]:
        rows = self.session.store.con.execute(
            "SELECT DISTINCT i.member_id FROM journal j JOIN plan_items i"
            " ON i.plan_id = j.plan_id AND i.item_id = j.item_id WHERE j.plan_id = ?"
            " AND i.target = 'mailchimp' AND i.member_id IN (SELECT unnest(?))",
            [self.plan.id, member_ids]).fetchall()
        return {r[0] for r in rows}

    def _mailchimp_drift(self, items: pd.DataFrame) -> dict[int, str]:
        from civimc_audit.changes.drift import cutoff
        from civimc_audit.mailchimp.live import member_interests

        members = sorted(set(items["member_id"].dropna()))
        if not members:
            return {}
        changed = self.session.mailchimp_writer(self.plan.target_list).changed_members(
            cutoff(self.run.snapshots["mailchimp"]))
        written = self._written_members(members)
        expected = self._expected_members(members)
        now = member_interests(self.session.mailchimp, self.plan.target_list, members)
        why: dict[str, str] = {}
        for mid in members:
            status, interests = now.get(mid, (None, {}))
            want_status, want = expected.get(mid, (None, {}))
            if status is None:
                why[mid] = "the Mailchimp member does not exist"
            elif mid in changed and mid not in written:
                when = changed[mid]["last_changed"]
                why[mid] = (f"changed at Mailchimp on {when:%Y-%m-%d %H:%M:%S}Z" if when
                            else "changed at Mailchimp (on a date it did not say)")
            elif status != want_status or any(interests.get(k, False) != want.get(k, False)
                                              for k in set(interests) | set(want)):
                why[mid] = "status or interests changed at Mailchimp since the snapshot"
        return {int(i): why[m] for i, m in zip(items["item_id"], items["member_id"], strict=True)
                if isinstance(m, str) and m in why}

    def _civicrm_drift(self, items: pd.DataFrame) -> dict[int, str]:
        from civimc_audit.changes.drift import civicrm_drift, cutoff

        out: dict[int, str] = {}
        known = items[items["contact_id"].notna()]
        for group_id, rows in known.groupby("civicrm_group_id"):
            changed = civicrm_drift(self.session.civicrm, self.session.store,
                                    self.plan.civicrm_snapshot_id, int(group_id),
                                    [int(c) for c in rows["contact_id"]],
                                    cutoff(self.run.snapshots["civicrm"]), self.run.tracking)
            for i, cid in zip(rows["item_id"], rows["contact_id"], strict=True):
                if int(cid) in changed:
                    out[int(i)] = changed[int(cid)]
        return out

    # sending -----------------------------------------------------------------------------
    def send(self, items: pd.DataFrame) -> None:
        """Send the interest items: Mailchimp's first, then CiviCRM's, batch by batch."""
        for target in ("mailchimp", "civicrm"):
            todo = items[items["target"] == target]
            for start in range(0, len(todo), INTEREST_CHUNK):
                chunk = self.drift(todo.iloc[start:start + INTEREST_CHUNK])
                if chunk.empty:
                    continue
                if target == "mailchimp":
                    self._mailchimp_call(chunk)
                else:
                    self._civicrm_calls(chunk)

    def _mailchimp_call(self, chunk: pd.DataFrame) -> None:
        writer = self.session.mailchimp_writer(self.plan.target_list)
        self.run.sending(chunk)
        checkpoint("interest_mailchimp_before_call")
        rows, unknown = [], None
        for row in chunk.to_dict("records"):
            payload = json.loads(row["payload"])
            r = writer.set_interests(payload["email_address"], payload["interests"])
            if r.ok:
                rows.append({"item_id": row["item_id"], "state": "done",
                             "detail": f"interest {'set' if row['action'] == 'set_interest' else 'cleared'}"
                                       f" at Mailchimp ({r.status})"})
            elif not r.final:
                unknown = unknown or r  # no answer: stays sending for the next run
            else:
                rows.append({"item_id": row["item_id"], "state": "failed", "title": r.title,
                             "detail": r.detail})
        checkpoint("interest_mailchimp_after_call")
        self.run.journal(rows)
        checkpoint("interest_mailchimp_after_journal")
        if unknown is not None:
            raise MailchimpError(f"apply stopped: a Mailchimp interest change failed "
                                 f"({unknown.title}: {unknown.detail}); its items are journaled "
                                 "as sending: run apply again to settle them and go on")

    def _civicrm_calls(self, chunk: pd.DataFrame) -> None:
        w = self.session.civicrm_writer
        resolved = chunk.assign(contact=[self.contact_of(r) for r in chunk.to_dict("records")])
        missing = resolved[resolved["contact"].isna()]
        self.run.journal([{"item_id": i, "state": "failed", "title": "contact missing",
                           "detail": "the contact this plan was to create is not in CiviCRM"}
                          for i in missing["item_id"]])
        for (action, group_id), rows in resolved[resolved["contact"].notna()].groupby(
                ["action", "civicrm_group_id"]):
            ids = [int(c) for c in rows["contact"]]
            payloads = [{**json.loads(p), "contact_id": c}
                        for p, c in zip(rows["payload"], ids, strict=True)]
            self.run.sending(rows, payloads)
            checkpoint("interest_civicrm_before_call")
            try:
                write = w.remove_from_group if action == _REMOVE else w.add_to_group
                result = write(int(group_id), ids, self.run.tracking)
            except CiviCRMError as exc:
                self._failed(rows, str(exc))
                continue
            checkpoint("interest_civicrm_after_call")
            self.run.journal([
                {"item_id": i, "state": "failed", "title": "contact missing",
                 "detail": f"contact {c} no longer exists in CiviCRM or is in the trash"}
                if result.get(c) == "missing" else
                {"item_id": i, "state": "done",
                 "detail": f"{result.get(c, 'done')} in the CiviCRM group {int(group_id)}"}
                for i, c in zip(rows["item_id"], ids, strict=True)])
            checkpoint("interest_civicrm_after_journal")

    def _failed(self, rows: pd.DataFrame, error: str) -> None:
        """A database error: what is in place anyway is done, the rest failed with it."""
        done, _ = self.settle(rows, {})
        self.run.journal(done)
        ok = {d["item_id"] for d in done}
        self.run.journal([{"item_id": i, "state": "failed", "title": "CiviCRM database error",
                           "detail": error} for i in rows["item_id"] if i not in ok])


def _done(row: dict, detail: str) -> dict:
    return {"item_id": row["item_id"], "state": "done", "detail": detail}
