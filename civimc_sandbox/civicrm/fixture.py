"""A CiviCRM fixture database for the demo and tests, written the way CiviCRM core writes it.

Group membership goes through `add_to_group` / `remove_from_group`, which store a
`civicrm_group_contact` row plus a `civicrm_subscription_history` row exactly as core's
GroupContact BAO does (REPLACE for adds, history-then-row for removals), with the dates given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from zoneinfo import ZoneInfo

import pymysql

MAILING_LIST = "\x012\x01"


@dataclass(frozen=True)
class SchemaVariant:
    """How one generation of CiviCRM sites differs from a fresh current install (docs/civicrm.md §1)."""

    name: str
    charset: str = "utf8mb4"              # sites created 4.3–5.32 use utf8 (utf8mb3)
    nullable_group_names: bool = False    # name/title/frontend_title NULL-able before 5.65
    history_datetime: bool = False        # subscription_history.date DATETIME (local time)
    tinyint4_booleans: bool = False       # booleans shown as tinyint(4) on upgraded sites
    cache_fill_took: bool = True          # added 5.67
    frontend_title: bool = True           # added 5.31
    legacy_group: bool = False            # 4.x: title varchar(64), is_active NULL-able
    enum_status: bool = False             # ancient DAOs: status/method as ENUMs


VARIANTS = {v.name: v for v in (
    SchemaVariant("current"),
    # A CiviCRM 5.6x site upgraded in place (the public MariaDB 10.5 dump in docs/civicrm.md §1.8).
    SchemaVariant("5.6x", nullable_group_names=True, tinyint4_booleans=True,
                  cache_fill_took=False),
    # Created before 5.33 and upgraded to 5.3x: utf8 tables, no frontend title yet.
    SchemaVariant("5.2x-utf8", charset="utf8", nullable_group_names=True,
                  tinyint4_booleans=True, cache_fill_took=False, frontend_title=False),
    # An old 4.x site: DATETIME history dates, utf8, legacy group columns and ENUM statuses.
    SchemaVariant("4.x", charset="utf8", nullable_group_names=True, history_datetime=True,
                  tinyint4_booleans=True, cache_fill_took=False, frontend_title=False,
                  legacy_group=True, enum_status=True),
)}


def _apply_variant(stmt: str, v: SchemaVariant) -> str:
    if v.charset != "utf8mb4":
        stmt = stmt.replace("CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci",
                            f"CHARSET={v.charset} COLLATE={v.charset}_unicode_ci")
    if v.tinyint4_booleans:
        stmt = stmt.replace("tinyint(1)", "tinyint(4)")
    if stmt.startswith("CREATE TABLE civicrm_group ("):
        if v.nullable_group_names:
            stmt = re.sub(r"\b(name varchar\(64\)|title varchar\(255\)|frontend_title "
                          r"varchar\(255\)) NOT NULL", r"\1 DEFAULT NULL", stmt)
        if not v.cache_fill_took:
            stmt = re.sub(r"\n\s*cache_fill_took double DEFAULT NULL,", "", stmt)
        if not v.frontend_title:
            stmt = re.sub(r"\n\s*frontend_(title|description) [^\n]*,", "", stmt)
        if v.legacy_group:
            stmt = re.sub(r"\btitle varchar\(255\)", "title varchar(64)", stmt)
            stmt = re.sub(r"is_active tinyint\(\d\) NOT NULL DEFAULT 1",
                          "is_active tinyint(4) DEFAULT NULL", stmt)
    if stmt.startswith("CREATE TABLE civicrm_subscription_history ("):
        if v.history_datetime:
            stmt = stmt.replace("`date` timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP",
                                "`date` datetime NOT NULL")
        if v.enum_status:
            stmt = stmt.replace("method varchar(8) DEFAULT NULL",
                                "method enum('Admin','Email','Web','API') DEFAULT NULL")
            stmt = stmt.replace("status varchar(8) DEFAULT NULL",
                                "status enum('Added','Removed','Pending','Deleted') DEFAULT NULL")
    if stmt.startswith("CREATE TABLE civicrm_group_contact (") and v.enum_status:
        stmt = stmt.replace("status varchar(8) DEFAULT NULL",
                            "status enum('Added','Removed','Pending') DEFAULT NULL")
    return stmt


def schema_statements(path: str = "schema.sql", variant: str = "current") -> list[str]:
    """The fixture DDL split into statements, as the named schema variant has it."""
    text = resources.files("civimc_sandbox.civicrm").joinpath(path).read_text(encoding="utf-8")
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    v = VARIANTS[variant]
    return [_apply_variant(s.strip(), v) for s in body.split(";") if s.strip()]


def create_database(conn: pymysql.connections.Connection, database: str,
                    schema: str = "schema.sql", variant: str = "current") -> None:
    """(Re)create `database` holding the fixture schema (of a schema variant, see VARIANTS);
    the connection is left using it."""
    charset = VARIANTS[variant].charset
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET {charset}"
                    f" COLLATE {charset}_unicode_ci")
        cur.execute(f"USE `{database}`")
        for stmt in schema_statements(schema, variant):
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

    def __init__(self, conn: pymysql.connections.Connection, timezone: str | None = None):
        self.conn = conn
        self.zone = ZoneInfo(timezone) if timezone else None
        with conn.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute("SELECT TABLE_NAME, COLUMN_NAME, DATA_TYPE FROM information_schema.COLUMNS"
                        " WHERE TABLE_SCHEMA = DATABASE()")
            self.columns = {(t, c): d for t, c, d in cur.fetchall()}
        if self.columns.get(("civicrm_subscription_history", "date")) == "datetime" \
                and self.zone is None:
            raise ValueError("this fixture database stores history dates as DATETIME (local "
                             "time): pass the site's timezone")

    def _history_time(self, when) -> str | None:
        """A history date as this database stores it: UTC, or local time in a DATETIME."""
        utc = _utc(when)
        if utc is None or self.columns.get(("civicrm_subscription_history", "date")) != "datetime":
            return utc
        local = datetime.fromisoformat(utc).replace(tzinfo=UTC).astimezone(self.zone)
        return local.strftime("%Y-%m-%d %H:%M:%S")

    def _exec(self, sql: str, args=()) -> int:
        with self.conn.cursor() as cur:
            cur.execute(sql, args)
            return cur.lastrowid

    def commit(self) -> None:
        self.conn.commit()

    def group(self, name: str, title: str | None = None, *, mailing: bool = True,
              saved_search_id: int | None = None, is_active: bool = True) -> int:
        title = title or name
        values = {"name": name, "title": title, "frontend_title": title,
                  "group_type": MAILING_LIST if mailing else "\x011\x01",
                  "saved_search_id": saved_search_id, "is_active": int(is_active),
                  "visibility": "User and User Admin Only"}
        values = {k: v for k, v in values.items() if ("civicrm_group", k) in self.columns}
        return self._exec(
            f"INSERT INTO civicrm_group ({', '.join(values)})"
            f" VALUES ({', '.join(['%s'] * len(values))})", tuple(values.values()))

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
        """Only a subscription_history row (what core writes beside each membership change).

        `when` None writes the zero date '0000-00-00 00:00:00' (old imports left such rows; the
        reader reads them as no date), allowing it for this statement only."""
        if when is None:
            with self.conn.cursor() as cur:
                cur.execute("SET @civimc_mode = @@SESSION.sql_mode, SESSION sql_mode = ''")
            try:
                return self._exec(
                    "INSERT INTO civicrm_subscription_history (contact_id, group_id, `date`,"
                    " method, status, tracking) VALUES (%s,%s,'0000-00-00 00:00:00',%s,%s,%s)",
                    (contact_id, group_id, method, status, tracking))
            finally:
                with self.conn.cursor() as cur:
                    cur.execute("SET SESSION sql_mode = @civimc_mode")
        return self._exec(
            "INSERT INTO civicrm_subscription_history (contact_id, group_id, `date`, method,"
            " status, tracking) VALUES (%s,%s,%s,%s,%s,%s)",
            (contact_id, group_id, self._history_time(when), method, status, tracking),
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
