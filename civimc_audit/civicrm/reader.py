"""Snapshot of one CiviCRM group into the audit store, read-only and consistent.

All tables are read inside one `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`, with
session time_zone '+00:00', so the snapshot is one instant of the database and every TIMESTAMP
is UTC. The account needs nothing but SELECT.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pymysql

from ..config import CiviCRMSettings
from ..errors import CiviCRMError, ConfigError
from ..store import Snapshot, Store
from .db import connect

MAILING_TYPE = "2"


@dataclass(frozen=True)
class GroupInfo:
    """The audited group, as read from civicrm_group."""

    id: int
    name: str | None
    title: str | None
    group_type: str | None
    saved_search_id: int | None
    is_active: bool
    is_hidden: bool

    @property
    def types(self) -> list[str]:
        return [t for t in (self.group_type or "").strip("\x01").split("\x01") if t]

    @property
    def is_mailing_list(self) -> bool:
        return MAILING_TYPE in self.types


def find_group(cur, settings: CiviCRMSettings) -> GroupInfo:
    """The configured group; refuses smart groups (the sync does not support them)."""
    cols = "id, name, title, group_type, saved_search_id, is_active, is_hidden"
    if settings.group_id is not None:
        cur.execute(f"SELECT {cols} FROM civicrm_group WHERE id = %s", (settings.group_id,))
        what = f"id {settings.group_id}"
    else:
        cur.execute(f"SELECT {cols} FROM civicrm_group WHERE name = %s", (settings.group_name,))
        what = f"name '{settings.group_name}'"
    row = cur.fetchone()
    if row is None:
        raise ConfigError(f"CiviCRM group with {what} not found in database "
                          f"'{settings.database}'")
    group = GroupInfo(row[0], row[1], row[2], row[3], row[4], bool(row[5]), bool(row[6]))
    if group.saved_search_id is not None:
        raise ConfigError(f"CiviCRM group {group.id} ('{group.title}') is a smart group; "
                          "only normal (static) mailing groups can be synced")
    return group


def _frame(cur, sql: str, args=()) -> pd.DataFrame:
    cur.execute(sql, args)
    cols = [d[0] for d in cur.description]
    return pd.DataFrame(list(cur.fetchall()), columns=cols)


QUERIES = {
    "civicrm_group_contact": (
        "SELECT id, group_id, contact_id, status FROM civicrm_group_contact WHERE group_id = %s"),
    "civicrm_subscription_history": (
        "SELECT id, contact_id, group_id, `date`, method, status"
        " FROM civicrm_subscription_history WHERE group_id = %s"),
    # Contacts that own an email or touch the group: everyone the rules can match or report.
    "civicrm_contact": (
        "SELECT c.id, c.contact_type, c.first_name, c.last_name, c.display_name, c.is_deleted,"
        " c.do_not_email, c.is_opt_out, c.is_deceased FROM civicrm_contact c"
        " WHERE EXISTS (SELECT 1 FROM civicrm_email e WHERE e.contact_id = c.id)"
        " OR EXISTS (SELECT 1 FROM civicrm_group_contact g WHERE g.contact_id = c.id"
        "            AND g.group_id = %(g)s)"
        " OR EXISTS (SELECT 1 FROM civicrm_subscription_history h WHERE h.contact_id = c.id"
        "            AND h.group_id = %(g)s)"),
    "civicrm_email": (
        "SELECT id, contact_id, email, is_primary, is_bulkmail, on_hold, location_type_id"
        " FROM civicrm_email WHERE contact_id IS NOT NULL"),
}


def snapshot_civicrm(settings: CiviCRMSettings, store: Store, progress: bool = False) -> Snapshot:
    """Read the configured group and everyone relevant to it into a new snapshot."""
    conn = connect(settings)
    snap_id = None
    try:
        with conn.cursor() as cur:
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            group = find_group(cur, settings)
            cur.execute("SELECT UTC_TIMESTAMP(), VERSION()")
            server_time, version = cur.fetchone()
            snap_id = store.begin_snapshot("civicrm", {
                "group_id": group.id, "group_name": group.name, "group_title": group.title,
                "database": settings.database, "server_version": version,
                "server_time_utc": server_time.isoformat(),
                "is_mailing_list": group.is_mailing_list,
            })
            frames = {"civicrm_group": pd.DataFrame([{
                "id": group.id, "name": group.name, "title": group.title,
                "group_type": group.group_type, "saved_search_id": group.saved_search_id,
                "is_active": group.is_active, "is_hidden": group.is_hidden}])}
            for table, sql in QUERIES.items():
                args = {"g": group.id} if "%(g)s" in sql else ((group.id,) if "%s" in sql else ())
                frames[table] = _frame(cur, sql, args)
            cur.execute("COMMIT")
        _store_frames(store, snap_id, frames)
        return store.finish_snapshot(snap_id)
    except pymysql.err.MySQLError as exc:
        msg = f"CiviCRM snapshot failed: {exc.args[-1] if exc.args else exc}"
        if snap_id is not None:
            store.fail_snapshot(snap_id, msg)
        raise CiviCRMError(msg) from None
    finally:
        conn.close()


def _store_frames(store: Store, snap_id: int, frames: dict[str, pd.DataFrame]) -> None:
    with store.transaction() as con:
        for table, df in frames.items():
            cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()][1:]
            for col in cols:
                if col not in df.columns:
                    df[col] = None
            con.register("_frame", df[cols])
            con.execute(f"INSERT INTO {table} SELECT {snap_id}, {', '.join(cols)} FROM _frame")
            con.unregister("_frame")


def changed_since(settings: CiviCRMSettings, group_id: int, contact_ids, since_utc) -> set[int]:
    """Contacts among `contact_ids` with a subscription_history row for the group dated after
    `since_utc` (the drift check before applying a plan), read with the read-only account."""
    from .columns import Schema, history_sql_time
    from .db import describe_error

    ids = list(dict.fromkeys(int(c) for c in contact_ids))
    if not ids:
        return set()
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            schema = Schema.read(cur, settings.database)
            since = history_sql_time(schema, settings, since_utc)
            changed: set[int] = set()
            for start in range(0, len(ids), 5000):
                cur.execute(
                    "SELECT DISTINCT contact_id FROM civicrm_subscription_history"
                    " WHERE group_id = %s AND contact_id IN %s AND `date` > %s",
                    (group_id, ids[start:start + 5000], since))
                changed.update(row[0] for row in cur.fetchall())
            return changed
    except pymysql.err.MySQLError as exc:
        raise CiviCRMError(f"CiviCRM drift check failed: {describe_error(exc, settings.user)}"
                           ) from None
    finally:
        conn.close()
