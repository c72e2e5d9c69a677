"""Reading the current state of both systems for the people of a plan.

Apply uses these reads to settle items an interrupted run left as `sending` (was the change
made or not?) instead of sending them again blindly, and to see whether a person to be created
in CiviCRM has appeared there since the snapshot (drift).
"""

from __future__ import annotations

from civimc_audit.civicrm.db import connect
from civimc_audit.common.emails import STRIP_PATTERN, normalize_email
from civimc_audit.config import CiviCRMSettings
from civimc_audit.errors import MailchimpError
from civimc_audit.mailchimp.client import MailchimpClient


def mailchimp_statuses(client: MailchimpClient, list_id: str, member_ids: list[str]
                       ) -> dict[str, str | None]:
    """member id -> current status at Mailchimp (None when the member does not exist)."""
    out: dict[str, str | None] = {}
    for mid in member_ids:
        try:
            out[mid] = client.get(f"/lists/{list_id}/members/{mid}", fields="status")["status"]
        except MailchimpError as exc:
            if exc.status != 404:
                raise
            out[mid] = None
    return out


def group_statuses(settings: CiviCRMSettings, group_id: int, contact_ids: list[int]
                   ) -> dict[int, str | None]:
    """contact id -> civicrm_group_contact.status for the group (None when there is no row)."""
    out: dict[int, str | None] = dict.fromkeys(contact_ids)
    if not contact_ids:
        return out
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            for start in range(0, len(contact_ids), 1000):
                chunk = contact_ids[start:start + 1000]
                marks = ", ".join(["%s"] * len(chunk))
                cur.execute(f"SELECT contact_id, status FROM civicrm_group_contact"
                            f" WHERE group_id = %s AND contact_id IN ({marks})",
                            (group_id, *chunk))
                for cid, status in cur.fetchall():
                    out[int(cid)] = status
    finally:
        conn.close()
    return out


def contacts_owning(settings: CiviCRMSettings, group_id: int, emails: list[str]
                    ) -> dict[str, list[tuple[int, str | None]]]:
    """lower-cased email -> [(non-deleted contact id, its group status)] for each address."""
    out: dict[str, list[tuple[int, str | None]]] = {normalize_email(e): [] for e in emails}
    if not emails:
        return out
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            keys = list(out)
            for start in range(0, len(keys), 1000):
                chunk = keys[start:start + 1000]
                marks = ", ".join(["%s"] * len(chunk))
                # SQL TRIM strips only spaces; the shared pattern strips what Python strips.
                cur.execute(
                    "SELECT DISTINCT e.email, c.id, g.status FROM civicrm_email e"
                    " JOIN civicrm_contact c ON c.id = e.contact_id AND c.is_deleted = 0"
                    " LEFT JOIN civicrm_group_contact g ON g.contact_id = c.id AND g.group_id = %s"
                    f" WHERE LOWER(REGEXP_REPLACE(e.email, %s, '')) IN ({marks}) ORDER BY c.id",
                    (group_id, STRIP_PATTERN, *chunk))
                seen = set()
                for email, cid, status in cur.fetchall():
                    key = (normalize_email(email), int(cid))
                    if key not in seen:
                        seen.add(key)
                        out.setdefault(key[0], []).append((int(cid), status))
    finally:
        conn.close()
    return out


def contacts_created_by(settings: CiviCRMSettings, group_id: int, source: str
                        ) -> dict[str, list[tuple[int, str | None]]]:
    """lower-cased email -> [(contact id, its group status)] of the contacts whose
    civicrm_contact.source is `source` (those a plan's apply created), lowest id first; the
    status of a contact in the trash is 'trashed'."""
    out: dict[str, list[tuple[int, str | None]]] = {}
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT e.email, c.id, IF(c.is_deleted, 'trashed', g.status)"
                " FROM civicrm_contact c"
                " JOIN civicrm_email e ON e.contact_id = c.id"
                " LEFT JOIN civicrm_group_contact g ON g.contact_id = c.id AND g.group_id = %s"
                " WHERE c.source = %s ORDER BY c.id", (group_id, source))
            for email, cid, status in cur.fetchall():
                out.setdefault(normalize_email(email), []).append((int(cid), status))
    finally:
        conn.close()
    return out
