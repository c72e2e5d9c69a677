"""The date-evidence step: after both snapshots, read the activity feeds the rules need.

Run by `snapshot` (when it took both sides) and by the scheduled `run` (verify does the same
after its fresh snapshots), never by reconcile, which stays offline and reads what this step
stored (docs/design.md "Date evidence"). The rows that need evidence are chosen in SQL
(reconcile/sql/07b_evidence_needed.sql: R2/R3 where Mailchimp wins on dates against a CiviCRM
history date); their feeds are read and stored by mailchimp/activity.py, `max_connections` at
once, and the Mailchimp snapshot's meta counts the requests.

An incremental Mailchimp snapshot reuses its base snapshot's evidence for every member that has
not changed since (same last_changed and status: a status change is an activity event, and it
moves last_changed), so a run after 1% of the audience changed reads about 1% of the feeds.
A feed that was unreadable is read again.
"""

from __future__ import annotations

from civimc_audit.config import Config
from civimc_audit.mailchimp.activity import EvidenceResult, gather_evidence
from civimc_audit.mailchimp.client import MailchimpClient
from civimc_audit.reconcile import evidence_needed
from civimc_audit.store import Store

# The base snapshot's readable evidence for the needed members that did not change since it,
# from the newest pair that has evidence for that base snapshot.
_REUSABLE_SQL = """
SELECT e.member_id, e.state, e.status_changed, e.status_event, e.detail
FROM mailchimp_evidence e
JOIN mailchimp_member b ON b.snapshot_id = $base AND b.id = e.member_id
JOIN mailchimp_member n ON n.snapshot_id = $snap AND n.id = e.member_id
WHERE e.mailchimp_snapshot_id = $base AND e.state = 'read'
  AND e.civicrm_snapshot_id = (SELECT max(civicrm_snapshot_id) FROM mailchimp_evidence
                               WHERE mailchimp_snapshot_id = $base)
  AND n.last_changed IS NOT DISTINCT FROM b.last_changed AND n.status = b.status
  AND e.member_id IN (SELECT unnest($needed::VARCHAR[]))
"""


def take_evidence(config: Config, store: Store, civicrm_snapshot_id: int,
                  mailchimp_snapshot_id: int,
                  client: MailchimpClient | None = None, *,
                  progress: bool = False,
                  batch_threshold: int | None = None) -> EvidenceResult:
    """Choose the rows (SQL), read their feeds (reusing an incremental snapshot's base
    evidence for unchanged members) and store the evidence for a pair of complete snapshots
    (again: replaces it)."""
    ids = evidence_needed(store, config.policy, civicrm_snapshot_id=civicrm_snapshot_id,
                          mailchimp_snapshot_id=mailchimp_snapshot_id)
    params = _reuse_params(store, mailchimp_snapshot_id, ids)
    kept = ({r[0] for r in store.con.execute(f"SELECT member_id FROM ({_REUSABLE_SQL})",
                                              params).fetchall()} if params else set())
    own = client is None
    client = client or MailchimpClient(config.mailchimp)
    try:
        result = gather_evidence(client, store, config.mailchimp.list_id, civicrm_snapshot_id,
                                 mailchimp_snapshot_id, [i for i in ids if i not in kept],
                                 progress=progress, batch_threshold=batch_threshold)
    finally:
        if own:
            client.close()
    if kept and params:
        with store.transaction() as con:
            con.execute("INSERT INTO mailchimp_evidence SELECT $m, $c, member_id, state,"
                        f" status_changed, status_event, detail FROM ({_REUSABLE_SQL})",
                        {**params, "m": mailchimp_snapshot_id, "c": civicrm_snapshot_id})
    store.add_snapshot_meta(mailchimp_snapshot_id, {"feed_reused": len(kept)})
    return result


def _reuse_params(store: Store, mailchimp_snapshot_id: int, ids: list[str]) -> dict | None:
    """_REUSABLE_SQL's parameters, or None without a base snapshot (a full snapshot)."""
    base = store.snapshot(mailchimp_snapshot_id).meta.get("base_snapshot_id")
    if not base or not ids:
        return None
    return {"base": base, "snap": mailchimp_snapshot_id, "needed": ids}
