"""`check`: can both systems be reached and read as configured?"""

from __future__ import annotations

from .civicrm.db import connect
from .civicrm.reader import find_group
from .config import Config
from .errors import CiviCRMError
from .mailchimp.client import MailchimpClient

CIVICRM_TABLES = ("civicrm_contact", "civicrm_email", "civicrm_group", "civicrm_group_contact",
                  "civicrm_subscription_history")


def check(config: Config) -> list[str]:
    """Lines saying what was verified; raises the first problem found."""
    lines = []
    conn = connect(config.civicrm)
    try:
        with conn.cursor() as cur:
            for table in CIVICRM_TABLES:
                try:
                    cur.execute(f"SELECT 1 FROM {table} LIMIT 1")
                    cur.fetchall()
                except Exception as exc:  # pymysql raises several kinds here
                    raise CiviCRMError(f"CiviCRM user '{config.civicrm.user}' cannot read "
                                       f"{table}: {exc.args[-1] if exc.args else exc}") from None
            group = find_group(cur, config.civicrm)
    finally:
        conn.close()
    lines.append(f"CiviCRM: can read {len(CIVICRM_TABLES)} tables as '{config.civicrm.user}'")
    lines.append(f"CiviCRM: group {group.id} '{group.title}' is a normal group"
                 + ("" if group.is_mailing_list else " (warning: not marked as a mailing list)"))
    client = MailchimpClient(config.mailchimp)
    try:
        client.ping()
        info = client.get_list(config.mailchimp.list_id)
        members = client.get(f"/lists/{config.mailchimp.list_id}/members", count=1,
                             fields="total_items")
    finally:
        client.close()
    lines.append(f"Mailchimp: API at {client.base_url} answers")
    lines.append(f"Mailchimp: audience {info['id']} '{info.get('name', '')}' exists; "
                 f"its members can be read ({members.get('total_items', 0)} of any status)")
    return lines
