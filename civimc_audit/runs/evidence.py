"""The date-evidence step: after both snapshots, read the activity feeds the rules need.

Run by `snapshot` (when it took both sides) and by the scheduled `run`, never by reconcile,
which stays offline and reads what this step stored (docs/design.md "Date evidence"). The rows
that need evidence are chosen in SQL (reconcile/sql/07b_evidence_needed.sql: R2/R3 where
Mailchimp wins on dates against a CiviCRM history date); their feeds are read by
mailchimp/activity.py, `max_connections` at once; the results go to `mailchimp_evidence` for the
pair of snapshots, and the Mailchimp snapshot's meta counts the requests.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pyarrow as pa

from civimc_audit.config import Config
from civimc_audit.mailchimp.activity import StatusEvidence, read_status_changes
from civimc_audit.mailchimp.client import MailchimpClient
from civimc_audit.reconcile import evidence_needed
from civimc_audit.store import Store
from civimc_audit.store.frames import insert_frame

_SCHEMA = pa.schema([("member_id", pa.string()), ("state", pa.string()),
                     ("status_changed", pa.timestamp("us")), ("status_event", pa.string()),
                     ("detail", pa.string())])


@dataclass(frozen=True)
class EvidenceResult:
    """What the step did: members whose feed was read, requests sent (retries included), and
    how many feeds stayed unreadable."""

    members: int
    requests: int
    unreadable: int
    seconds: float

    def meta(self, civicrm_snapshot_id: int) -> dict:
        return {"feed_members": self.members, "feed_requests": self.requests,
                "feed_unreadable": self.unreadable, "feed_seconds": round(self.seconds, 3),
                "evidence_civicrm_snapshot_id": civicrm_snapshot_id}

    def line(self) -> str:
        text = (f"date evidence: read {self.members} activity feed(s) in {self.requests} "
                "request(s)")
        return text + (f", {self.unreadable} unreadable (flagged status_change_unknown)"
                       if self.unreadable else "")


def evidence_frame(found: list[StatusEvidence]) -> pa.Table:
    return pa.Table.from_pylist([{"member_id": e.member_id, "state": e.state,
                                  "status_changed": e.status_changed,
                                  "status_event": e.status_event, "detail": e.detail}
                                 for e in found], schema=_SCHEMA)


def gather_evidence(config: Config, store: Store, civicrm_snapshot_id: int,
                    mailchimp_snapshot_id: int,
                    client: MailchimpClient | None = None) -> EvidenceResult:
    """Read and store the evidence for a pair of complete snapshots (again: replaces it)."""
    ids = evidence_needed(store, config.policy, civicrm_snapshot_id=civicrm_snapshot_id,
                          mailchimp_snapshot_id=mailchimp_snapshot_id)
    own = client is None
    client = client or MailchimpClient(config.mailchimp)
    before = client.stats["requests"]
    t0 = time.monotonic()
    try:
        found = read_status_changes(client, config.mailchimp.list_id, ids)
    finally:
        if own:
            client.close()
    result = EvidenceResult(len(ids), client.stats["requests"] - before,
                            sum(e.state == "unreadable" for e in found), time.monotonic() - t0)
    with store.transaction() as con:
        con.execute("DELETE FROM mailchimp_evidence WHERE mailchimp_snapshot_id = ?"
                    " AND civicrm_snapshot_id = ?", [mailchimp_snapshot_id, civicrm_snapshot_id])
        if found:
            insert_frame(con, "mailchimp_evidence", evidence_frame(found),
                         select="$m, $c, member_id, state, status_changed, status_event, detail",
                         params={"m": mailchimp_snapshot_id, "c": civicrm_snapshot_id})
    store.add_snapshot_meta(mailchimp_snapshot_id, result.meta(civicrm_snapshot_id))
    return result
