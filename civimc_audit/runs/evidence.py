"""The date-evidence step: after both snapshots, read the activity feeds the rules need.

Run by `snapshot` (when it took both sides) and by the scheduled `run` (verify does the same
after its fresh snapshots), never by reconcile, which stays offline and reads what this step
stored (docs/design.md "Date evidence"). The rows that need evidence are chosen in SQL
(reconcile/sql/07b_evidence_needed.sql: R2/R3 where Mailchimp wins on dates against a CiviCRM
history date); their feeds are read and stored by mailchimp/activity.py, `max_connections` at
once, and the Mailchimp snapshot's meta counts the requests.
"""

from __future__ import annotations

from civimc_audit.config import Config
from civimc_audit.mailchimp.activity import EvidenceResult, gather_evidence
from civimc_audit.mailchimp.client import MailchimpClient
from civimc_audit.reconcile import evidence_needed
from civimc_audit.store import Store


def take_evidence(config: Config, store: Store, civicrm_snapshot_id: int,
                  mailchimp_snapshot_id: int,
                  client: MailchimpClient | None = None) -> EvidenceResult:
    """Choose the rows (SQL), read their feeds and store the evidence for a pair of complete
    snapshots (again: replaces it)."""
    ids = evidence_needed(store, config.policy, civicrm_snapshot_id=civicrm_snapshot_id,
                          mailchimp_snapshot_id=mailchimp_snapshot_id)
    own = client is None
    client = client or MailchimpClient(config.mailchimp)
    try:
        return gather_evidence(client, store, config.mailchimp.list_id, civicrm_snapshot_id,
                               mailchimp_snapshot_id, ids)
    finally:
        if own:
            client.close()
