"""Snapshot of one CiviCRM group into the audit store, read-only, consistent and fast.

All tables are read inside one `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`, with
session time_zone '+00:00', so the snapshot is one instant of the database and every TIMESTAMP
is UTC. The account needs nothing but SELECT. Column presence and types come from
information_schema (sites differ by version); a DATETIME history date is local time and is
converted from `[civicrm] timezone`. Rows travel in packed chunks straight into DuckDB
(`stream.py`) and reach the store's tables in one transaction at the end, so a failed read
leaves nothing behind but a snapshot marked failed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pymysql

from ..config import CiviCRMSettings
from ..errors import CiviCRMError, ConfigError
from ..store import Snapshot, Store
from .columns import Schema, site_zone
from .db import connect, describe_error
from .stream import Field, TableRead, stream_table

MAILING_TYPE = "2"
GROUP_COLUMNS = ("id", "name", "title", "group_type", "saved_search_id", "is_active", "is_hidden")


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


def find_group(cur, settings: CiviCRMSettings, schema: Schema | None = None) -> GroupInfo:
    """The configured group; refuses smart groups (the sync does not support them)."""
    schema = schema or Schema.read(cur, settings.database)
    schema.require("civicrm_group", "id", "saved_search_id")
    cols = ", ".join(c if schema.has("civicrm_group", c) else f"NULL AS {c}"
                     for c in GROUP_COLUMNS)
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
    group = GroupInfo(row[0], row[1], row[2], row[3], row[4],
                      bool(row[5]) if row[5] is not None else True, bool(row[6]))
    if group.saved_search_id is not None:
        raise ConfigError(f"CiviCRM group {group.id} ('{group.title}') is a smart group; "
                          "only normal (static) mailing groups can be synced")
    return group


def table_reads(schema: Schema, settings: CiviCRMSettings) -> list[TableRead]:
    """What the rules need, per table, in the store's column names (missing columns → NULL)."""

    def fields(table: str, alias: str, spec: str) -> tuple[Field, ...]:
        out = []
        for item in spec.split():
            name, kind = item.split(":")
            out.append(Field(name, f"{alias}.`{name}`" if schema.has(table, name) else None, kind))
        return tuple(out)

    schema.require("civicrm_group_contact", "id", "group_id", "contact_id", "status")
    schema.require("civicrm_subscription_history", "id", "contact_id", "group_id", "date",
                   "status")
    schema.require("civicrm_contact", "id", "is_deleted")
    schema.require("civicrm_email", "id", "contact_id", "email", "on_hold")
    zone = site_zone(settings).key if schema.history_date_is_datetime else None
    return [
        TableRead("civicrm_group_contact", "gc", "gc.group_id = %(g)s",
                  fields("civicrm_group_contact", "gc",
                         "id:int group_id:int contact_id:int status:text"), bounded=True),
        TableRead("civicrm_subscription_history", "h", "h.group_id = %(g)s",
                  fields("civicrm_subscription_history", "h",
                         "id:int contact_id:int group_id:int date:time method:text status:text"),
                  time_zone=zone, bounded=True),
        # Everyone the rules can match or report: contacts touching the group and every owner
        # of an email address (any of them may be a Mailchimp member's address).
        TableRead("civicrm_contact", "c",
                  "EXISTS (SELECT 1 FROM civicrm_email ce WHERE ce.contact_id = c.id)"
                  " OR EXISTS (SELECT 1 FROM civicrm_group_contact cg WHERE cg.contact_id = c.id"
                  " AND cg.group_id = %(g)s)"
                  " OR EXISTS (SELECT 1 FROM civicrm_subscription_history ch"
                  " WHERE ch.contact_id = c.id AND ch.group_id = %(g)s)",
                  fields("civicrm_contact", "c",
                         "id:int contact_type:text first_name:text last_name:text"
                         " display_name:text is_deleted:bool do_not_email:bool is_opt_out:bool"
                         " is_deceased:bool")),
        TableRead("civicrm_email", "e", "e.contact_id IS NOT NULL",
                  fields("civicrm_email", "e",
                         "id:int contact_id:int email:text is_primary:bool is_bulkmail:bool"
                         " on_hold:int location_type_id:int")),
    ]


def snapshot_civicrm(settings: CiviCRMSettings, store: Store, progress: bool = False, *,
                     lock_wait_timeout: int = 60,
                     on_chunk: Callable[[str, int], None] | None = None) -> Snapshot:
    """Read the configured group and everyone relevant to it into a new, complete snapshot.

    `lock_wait_timeout` bounds how long a read waits behind another session's table lock (DDL,
    LOCK TABLES) before failing; `on_chunk(table, rows so far)` is called as rows arrive.
    """
    conn = connect(settings, read_timeout=3600)
    snap_id = None
    staged: list[str] = []
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@max_allowed_packet")
            max_bytes = max(int(cur.fetchone()[0]) - 65536, 1 << 20)
            cur.execute("SET SESSION group_concat_max_len = %s", (max_bytes,))
            cur.execute("SET SESSION lock_wait_timeout = %s", (lock_wait_timeout,))
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            schema = Schema.read(cur, settings.database)
            group = find_group(cur, settings, schema)
            reads = table_reads(schema, settings)
            cur.execute("SELECT UTC_TIMESTAMP(), VERSION()")
            server_time, version = cur.fetchone()
            snap_id = store.begin_snapshot("civicrm", {
                "group_id": group.id, "group_name": group.name, "group_title": group.title,
                "database": settings.database, "server_version": version,
                "server_time_utc": server_time.isoformat(),
                "is_mailing_list": group.is_mailing_list,
                "history_date_type": "DATETIME" if schema.history_date_is_datetime
                else "TIMESTAMP",
                "history_time_zone": reads[1].time_zone or "UTC",
            })
            for read in reads:
                target = f"_stage_{read.name}"
                staged.append(target)
                stream_table(cur, store.con, read, target, {"g": group.id}, max_bytes=max_bytes,
                             progress=progress, on_chunk=on_chunk)
            cur.execute("COMMIT")
        with store.transaction() as con:
            con.execute("INSERT INTO civicrm_group (snapshot_id, id, name, title, group_type,"
                        " saved_search_id, is_active, is_hidden) VALUES (?,?,?,?,?,?,?,?)",
                        [snap_id, group.id, group.name, group.title, group.group_type,
                         group.saved_search_id, group.is_active, group.is_hidden])
            for read, target in zip(reads, staged, strict=True):
                cols = ", ".join(f.name for f in read.fields)
                con.execute(f"INSERT INTO {read.name} (snapshot_id, {cols})"
                            f" SELECT {snap_id}, {cols} FROM {target}")
        return store.finish_snapshot(snap_id)
    except (pymysql.err.MySQLError, duckdb.Error, ValueError, KeyboardInterrupt) as exc:
        if isinstance(exc, pymysql.err.MySQLError):
            reason = describe_error(exc, settings.user)
        else:
            reason = str(exc) or type(exc).__name__
        msg = (f"CiviCRM snapshot failed: {reason}; nothing was stored"
               + (f" (snapshot {snap_id} marked failed)" if snap_id else "")
               + ", run the snapshot again")
        if snap_id is not None:
            store.fail_snapshot(snap_id, msg)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise CiviCRMError(msg) from None
    finally:
        for target in staged:
            store.con.execute(f"DROP TABLE IF EXISTS {target}")
        conn.close()

def changed_since(settings: CiviCRMSettings, group_id: int, contact_ids, since_utc) -> set[int]:
    """Contacts among `contact_ids` with a subscription_history row for the group dated after
    `since_utc` (the drift check before applying a plan), read with the read-only account."""
    from .columns import history_sql_time

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
