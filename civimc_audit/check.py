"""`check`: can both systems be reached and read as configured?"""

from __future__ import annotations

from civimc_audit.civicrm.db import connect
from civimc_audit.civicrm.dump import find_client
from civimc_audit.civicrm.reader import find_group, mailing_list_warning
from civimc_audit.config import ENV_CIVICRM_WRITE_PASSWORD, Config
from civimc_audit.errors import CiviCRMError
from civimc_audit.mailchimp.client import MailchimpClient

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
    lines.append(f"CiviCRM: group {group.id} '{group.title}' is a normal group")
    if not group.is_mailing_list:
        lines.append(mailing_list_warning(group.id, group.title))
    client_path = find_client()
    lines.append(f"CiviCRM: snapshots stream through the command-line client {client_path}"
                 if client_path else
                 "CiviCRM: snapshots read in server-packed chunks (install the mariadb or mysql "
                 "command-line client for faster snapshots)")
    lines.append(check_writer(config))
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


# What the writer needs (README "Applying an approved plan"), table by table.
WRITER_PRIVILEGES = {
    "civicrm_group_contact": ("SELECT", "INSERT", "UPDATE"),
    "civicrm_subscription_history": ("SELECT", "INSERT"),
    "civicrm_contact": ("SELECT", "INSERT"),
    "civicrm_email": ("SELECT", "INSERT", "UPDATE"),
}

_GRANTEE = ("CONCAT('\\'', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '\\'@\\'',"
            " SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '\\'')")


def check_writer(config: Config) -> str:
    """One line on the write account: its privileges suffice, or which are missing.

    Read from information_schema (global, database and table grants of the account itself);
    privileges that come only through a role are not seen and are reported as missing.
    """
    settings = config.civicrm
    if not settings.write_user:
        return "CiviCRM: no write_user configured (needed only to apply a plan)"
    if not settings.write_password:
        return (f"CiviCRM: write account '{settings.write_user}' not checked "
                f"({ENV_CIVICRM_WRITE_PASSWORD} is not set)")
    conn = connect(settings, write=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT privilege_type FROM information_schema.USER_PRIVILEGES"
                        f" WHERE grantee = {_GRANTEE}")
            granted = {("*", p) for (p,) in cur.fetchall()}
            cur.execute(f"SELECT privilege_type FROM information_schema.SCHEMA_PRIVILEGES"
                        f" WHERE grantee = {_GRANTEE} AND %s LIKE table_schema",
                        (settings.database,))
            granted |= {("*", p) for (p,) in cur.fetchall()}
            cur.execute(f"SELECT table_name, privilege_type FROM information_schema.TABLE_PRIVILEGES"
                        f" WHERE grantee = {_GRANTEE} AND table_schema = %s", (settings.database,))
            granted |= set(cur.fetchall())
    finally:
        conn.close()
    missing = [f"{p} on {table}" for table, privs in WRITER_PRIVILEGES.items() for p in privs
               if ("*", p) not in granted and (table, p) not in granted
               and ("*", "ALL PRIVILEGES") not in granted]
    if missing:
        raise CiviCRMError(f"CiviCRM write account '{settings.write_user}' lacks "
                           f"{', '.join(missing)} (see README for the grants)", misconfigured=True)
    return f"CiviCRM: write account '{settings.write_user}' has the privileges apply needs"
