"""A CiviCRM fixture database for the demo and tests, written the way CiviCRM core writes it.

Group membership goes through `add_to_group` / `remove_from_group`, which store a
`civicrm_group_contact` row plus a `civicrm_subscription_history` row exactly as core's
GroupContact BAO does (REPLACE for adds, history-then-row for removals), with the dates given.
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib import resources

import pymysql

MAILING_LIST = "\x012\x01"


def schema_statements(path: str = "schema.sql") -> list[str]:
    """The fixture DDL split into statements."""
    text = resources.files("civimc_audit.civicrm").joinpath(path).read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def create_database(conn: pymysql.connections.Connection, database: str,
                    schema: str = "schema.sql") -> None:
    """(Re)create `database` holding the fixture schema; the connection is left using it."""
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
        cur.execute(f"USE `{database}`")
        for stmt in schema_statements(schema):
            cur.execute(stmt)
    conn.commit()


def _utc(when: datetime | str | None) -> str | None:
    if when is None:
        return None
    if isinstance(when, str):
        when = datetime.fromisoformat(when.replace("Z", "+00:00"))
    if when.tzinfo is None:
        raise ValueError("fixture dates must be timezone-aware")
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


class CiviFixture:
    """Writes groups, contacts, emails and membership changes into a fixture database.

    The connection must use session time_zone '+00:00' (`civicrm.db.connect` does), so the UTC
    strings written here land in TIMESTAMP columns as the instants meant.
    """

    def __init__(self, conn: pymysql.connections.Connection):
        self.conn = conn
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")

    def _exec(self, sql: str, args=()) -> int:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.lastrowid

    def commit(self) -> None:
        self.conn.commit()

    def group(self, name: str, title: str | None = None, *, mailing: bool = True,
              saved_search_id: int | None = None, is_active: bool = True) -> int:
        title = title or name
        return self._exec(
            "INSERT INTO civicrm_group (name, title, frontend_title, group_type, saved_search_id,"
            " is_active, visibility) VALUES (%s, %s, %s, %s, %s, %s, 'User and User Admin Only')",
            (name, title, title, MAILING_LIST if mailing else "\x011\x01", saved_search_id,
             int(is_active)),
        )

    def contact(self, first_name: str | None = None, last_name: str | None = None, *,
                contact_type: str = "Individual", is_deleted: bool = False,
                do_not_email: bool = False, is_opt_out: bool = False, is_deceased: bool = False,
                email: str | None = None, source: str | None = None) -> int:
        """Add a contact (and, with `email`, its primary email); returns the contact id."""
        display = " ".join(p for p in (first_name, last_name) if p) or email
        sort = ", ".join(p for p in (last_name, first_name) if p) or email
        cid = self._exec(
            "INSERT INTO civicrm_contact (contact_type, first_name, last_name, display_name,"
            " sort_name, is_deleted, do_not_email, is_opt_out, is_deceased, source, created_date,"
            " modified_date) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,NOW(),NOW())",
            (contact_type, first_name, last_name, display, sort, int(is_deleted),
             int(do_not_email), int(is_opt_out), int(is_deceased), source),
        )
        if email is not None:
            self.email(cid, email, is_primary=True)
        return cid

    def email(self, contact_id: int, email: str, *, is_primary: bool = False,
              is_bulkmail: bool = False, on_hold: int = 0, location_type_id: int = 1) -> int:
        return self._exec(
            "INSERT INTO civicrm_email (contact_id, location_type_id, email, is_primary,"
            " is_bulkmail, on_hold, hold_date) VALUES (%s,%s,%s,%s,%s,%s,%s)",
            (contact_id, location_type_id, email, int(is_primary), int(is_bulkmail), on_hold,
             datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S") if on_hold else None),
        )

    def history(self, contact_id: int, group_id: int, when, status: str,
                method: str = "Admin", tracking: str | None = "") -> int:
        """Only a subscription_history row (what core writes beside each membership change)."""
        return self._exec(
            "INSERT INTO civicrm_subscription_history (contact_id, group_id, `date`, method,"
            " status, tracking) VALUES (%s,%s,%s,%s,%s,%s)",
            (contact_id, group_id, _utc(when), method, status, tracking),
        )

    def set_membership(self, contact_id: int, group_id: int, status: str) -> None:
        """Only the civicrm_group_contact row (e.g. to model a direct-SQL import without history)."""
        self._exec(
            "INSERT INTO civicrm_group_contact (group_id, contact_id, status) VALUES (%s,%s,%s)"
            " ON DUPLICATE KEY UPDATE status = VALUES(status)",
            (group_id, contact_id, status),
        )

    def add_to_group(self, contact_id: int, group_id: int, when, method: str = "Admin") -> None:
        """As core's bulkAddContactsToGroup: REPLACE the row as Added, then a history row."""
        self._exec(
            "REPLACE INTO civicrm_group_contact (group_id, contact_id, status) VALUES (%s,%s,'Added')",
            (group_id, contact_id),
        )
        self.history(contact_id, group_id, when, "Added", method)

    def remove_from_group(self, contact_id: int, group_id: int, when, method: str = "Admin") -> None:
        """As core's removeContactsFromGroup('Removed'): history row, then the row set Removed."""
        self.history(contact_id, group_id, when, "Removed", method)
        self.set_membership(contact_id, group_id, "Removed")

    def pending(self, contact_id: int, group_id: int, when, method: str = "Email") -> None:
        self.history(contact_id, group_id, when, "Pending", method)
        self.set_membership(contact_id, group_id, "Pending")

    def delete_from_group(self, contact_id: int, group_id: int, when,
                          method: str = "Admin") -> None:
        """As core's removeContactsFromGroup('Deleted'): the row goes, a 'Deleted' history row stays."""
        self._exec("DELETE FROM civicrm_group_contact WHERE contact_id=%s AND group_id=%s",
                   (contact_id, group_id))
        self.history(contact_id, group_id, when, "Deleted", method)
