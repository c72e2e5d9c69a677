"""Snapshot of one CiviCRM group into the audit store, read-only, consistent and fast.

All tables are read inside one `START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY`, with
session time_zone '+00:00', so the snapshot is one instant of the database and every TIMESTAMP
is UTC. The account needs nothing but SELECT. Column presence and types come from
information_schema (sites differ by version); a DATETIME history date is local time and is
converted from `[civicrm] timezone`. Rows go straight into DuckDB, through the `mariadb`/`mysql`
command-line client when one is installed (`dump.py`, the fastest way out of the server) or
else in server-packed chunks (`stream.py`), and reach the store's tables in one transaction, so
a failed read leaves nothing behind but a snapshot marked failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pymysql

from civimc_audit.civicrm.columns import Schema, site_zone
from civimc_audit.civicrm.db import connect, describe_error
from civimc_audit.civicrm.dump import dump_tables, find_client, select_sql
from civimc_audit.civicrm.stream import Field, TableRead, stream_table
from civimc_audit.common.crashpoints import checkpoint
from civimc_audit.common.progress import progress_bar
from civimc_audit.config import CiviCRMSettings
from civimc_audit.errors import CiviCRMError, ClientUnavailable, ConfigError
from civimc_audit.store import Snapshot, Store, scalar
from civimc_audit.store.lock import holds_lock

MAILING_TYPE = "2"
# Materialising the contact filter's EXISTS subqueries builds temporary tables of ~a million ids
# per query (ten times slower here than index lookups per contact), so they are turned off.
OPTIMIZER_SWITCH = "materialization=off"
GROUP_COLUMNS = ("id", "name", "title", "group_type", "saved_search_id", "is_active", "is_hidden")
#: How rows leave the server: "auto" (the command-line client if installed, else "server"),
#: "client" (only the command-line client) or "server" (packed chunks through pymysql).
TRANSPORTS = ("auto", "client", "server")
SNAPSHOT_READ_TIMEOUT = 3600  # seconds one server answer may take
#: The snapshot keeps everyone the rules can match or report: every owner of an email address
#: (any may be a Mailchimp member's) and every contact touching the audited group; the others
#: are dropped, judged from the rows this snapshot read (so at the same instant). Filtering in
#: MariaDB instead (EXISTS per contact) took twice a plain scan of the table.
OUT_OF_SCOPE = """
DELETE FROM civicrm_contact c WHERE c.snapshot_id = $s AND NOT EXISTS (
    SELECT 1 FROM (SELECT contact_id FROM civicrm_email WHERE snapshot_id = $s
                   UNION ALL SELECT contact_id FROM civicrm_group_contact
                   WHERE snapshot_id = $s AND group_id = $g
                   UNION ALL SELECT contact_id FROM civicrm_subscription_history
                   WHERE snapshot_id = $s AND group_id = $g) k
    WHERE k.contact_id = c.id)
"""


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


def find_mapped_groups(cur, database: str, interests: dict[str, int],
                       schema: Schema | None = None) -> dict[int, GroupInfo]:
    """Group id → GroupInfo for every group `interests` maps to; raises ConfigError naming the
    first one that does not exist or is a smart group."""
    if not interests:
        return {}
    schema = schema or Schema.read(cur, database)
    cols = ", ".join(c if schema.has("civicrm_group", c) else f"NULL AS {c}"
                     for c in GROUP_COLUMNS)
    ids = sorted(set(interests.values()))
    cur.execute(f"SELECT {cols} FROM civicrm_group WHERE id IN ({', '.join(['%s'] * len(ids))})",
                tuple(ids))
    found = {int(r[0]): GroupInfo(int(r[0]), r[1], r[2], r[3], r[4],
                                  bool(r[5]) if r[5] is not None else True, bool(r[6]))
             for r in cur.fetchall()}
    for interest, gid in interests.items():
        group = found.get(gid)
        if group is None:
            raise ConfigError(f"[interests] {interest} = {gid}: CiviCRM group {gid} not found in "
                              f"database '{database}'")
        if group.saved_search_id is not None:
            raise ConfigError(f"[interests] {interest} = {gid}: CiviCRM group {gid} "
                              f"('{group.title}') is a smart group; only normal (static) groups "
                              "can be mapped to interests")
    return found


def table_reads(schema: Schema, settings: CiviCRMSettings) -> list[TableRead]:
    """What the rules need, per table, in the store's column names (missing columns → NULL)."""

    def fields(table: str, alias: str, spec: str) -> tuple[Field, ...]:
        out = []
        for item in spec.split():
            name, kind = item.split(":")
            col = schema.columns.get(table, {}).get(name)
            if col is None:
                out.append(Field(name, None, kind))
                continue
            utf8 = (col.charset or "").startswith("utf8") and col.data_type not in ("enum", "set")
            out.append(Field(name, f"{alias}.`{name}`", kind, nullable=col.nullable,
                             convert=not utf8))
        return tuple(out)

    schema.require("civicrm_group_contact", "id", "group_id", "contact_id", "status")
    schema.require("civicrm_subscription_history", "id", "contact_id", "group_id", "date",
                   "status")
    schema.require("civicrm_contact", "id", "is_deleted")
    schema.require("civicrm_email", "id", "contact_id", "email", "on_hold")
    zone = site_zone(settings).key if schema.history_date_is_datetime else None
    return [
        TableRead("civicrm_group", "g", "g.id = %(g)s",
                  fields("civicrm_group", "g", "id:int name:text title:text group_type:text"
                         " saved_search_id:int is_active:bool is_hidden:bool"), bounded=True),
        # The audited group's rows and those of every group [interests] maps (%(gs)s holds
        # them all; the rules select each group by id).
        TableRead("civicrm_group_contact", "gc", "gc.group_id IN %(gs)s",
                  fields("civicrm_group_contact", "gc",
                         "id:int group_id:int contact_id:int status:text"), bounded=True,
                  index=schema.index_on("civicrm_group_contact", "group_id")),
        TableRead("civicrm_subscription_history", "h", "h.group_id IN %(gs)s",
                  fields("civicrm_subscription_history", "h",
                         "id:int contact_id:int group_id:int date:time method:text status:text"),
                  time_zone=zone, bounded=True,
                  index=schema.index_on("civicrm_subscription_history", "group_id")),
        # Every contact, read whole (a plain scan, the cheapest read the server has); those
        # the rules do not need are dropped from the store afterwards (OUT_OF_SCOPE).
        TableRead("civicrm_contact", "c", "TRUE",
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
                     on_chunk: Callable[[str, int], None] | None = None,
                     transport: str = "auto",
                     conn: pymysql.connections.Connection | None = None,
                     interests: dict[str, int] | None = None) -> Snapshot:
    """Read the configured group and everyone relevant to it into a new, complete snapshot.

    `interests` ([interests]: Mailchimp interest id → CiviCRM group id) adds the group_contact
    and history rows of each mapped group, read in the same transaction; a mapped group that
    is missing or smart is refused (ConfigError) before anything is stored.

    `lock_wait_timeout` bounds how long a read waits behind another session's table lock (DDL,
    LOCK TABLES) before failing; `on_chunk(table, rows so far)` is called as rows arrive;
    `transport` is one of TRANSPORTS; `conn` is a read connection to use (and leave open)
    instead of one of its own (opened with `read_timeout=SNAPSHOT_READ_TIMEOUT`).
    """
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {TRANSPORTS}, not {transport!r}")
    client = find_client() if transport != "server" else None
    if transport == "client" and client is None:
        raise ConfigError("no mariadb or mysql command-line client on PATH")
    own = conn is None
    if conn is None:
        conn = connect(settings, read_timeout=SNAPSHOT_READ_TIMEOUT)
    snap_id = threads = None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@max_allowed_packet")
            max_bytes = max(int(cur.fetchone()[0]) - 65536, 1 << 20)
            cur.execute("SET SESSION group_concat_max_len = %s", (max_bytes,))
            cur.execute("SET SESSION lock_wait_timeout = %s", (lock_wait_timeout,))
            # This session idles while the command-line client reads: it must outlive it.
            cur.execute("SET SESSION wait_timeout = 86400")
            cur.execute(f"SET SESSION optimizer_switch = '{OPTIMIZER_SWITCH}'")
            cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            schema = Schema.read(cur, settings.database)
            group = find_group(cur, settings, schema)
            mapped = find_mapped_groups(cur, settings.database, interests or {}, schema)
            reads = table_reads(schema, settings)
            cur.execute("SELECT UTC_TIMESTAMP(), VERSION()")
            server_time, version = cur.fetchone()
            snap_id = store.begin_snapshot("civicrm", abandon_running=holds_lock(store.path),
                                           meta={
                "group_id": group.id, "group_name": group.name, "group_title": group.title,
                "database": settings.database, "server_version": version,
                "server_time_utc": server_time.isoformat(),
                "is_mailing_list": group.is_mailing_list,
                "history_date_type": "DATETIME" if schema.history_date_is_datetime
                else "TIMESTAMP",
                "history_time_zone": next(r.time_zone for r in reads
                                          if r.name == "civicrm_subscription_history") or "UTC",
                "interest_groups": [{"interest_id": i, "group_id": g, "title": mapped[g].title}
                                    for i, g in (interests or {}).items()],
            })
            threads = scalar(store.con, "SELECT current_setting('threads')")
            # Rows are inserted with one DuckDB thread, whichever way they travel: the server
            # and the client (or the parser) need the other cores, and one thread keeps pace
            # with them. More threads cost more CPU in all (at a million contacts, 2.2 CPU-s
            # instead of 1.6 from the client's files): each writes row groups of its own,
            # which DuckDB merges again when the store is checkpointed at close.
            store.con.execute("SET threads = 1")
            # Rows go straight into the store's tables inside one DuckDB transaction: a failure
            # rolls them all back, so no partial snapshot ever exists.
            with store.transaction() as con:
                used = _read_rows(cur, con, client, transport, settings, reads,
                                  params={"g": group.id,
                                          "gs": (group.id, *sorted(set(mapped) - {group.id}))},
                                  constants={"snapshot_id": snap_id},
                                  session=_client_session(lock_wait_timeout, version),
                                  max_bytes=max_bytes, progress=progress, on_chunk=on_chunk)
                _settle_group_row(con, snap_id, group)
                con.execute(OUT_OF_SCOPE, {"s": snap_id, "g": group.id})
                checkpoint("civicrm_loading")
                cur.execute("COMMIT")
                return store.finish_snapshot(snap_id, meta={"transport": used})
    except (pymysql.err.MySQLError, duckdb.Error, ValueError, OSError, ClientUnavailable,
            KeyboardInterrupt) as exc:
        if isinstance(exc, pymysql.err.MySQLError):
            reason = describe_error(exc, settings.user)
        elif isinstance(exc, ClientUnavailable):
            reason = f"the command-line client {client} could not connect ({exc})"
        else:
            # DuckDB's messages run over several lines; the first says what failed.
            reason = (str(exc) or type(exc).__name__).strip().splitlines()[0]
        msg = (f"CiviCRM snapshot failed: {reason}; nothing was stored"
               + (f" (snapshot {snap_id} marked failed)" if snap_id else "")
               + ", run the snapshot again")
        if snap_id is not None:
            store.fail_snapshot(snap_id, msg)
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise CiviCRMError(msg) from None
    finally:
        if threads is not None:
            store.con.execute(f"SET threads = {int(threads)}")
        if own:
            conn.close()


def _client_session(lock_wait_timeout: int, version: str) -> list[str]:
    """The command-line client's session settings: those of the reader's own session, and no
    statement time limit (each table is one long SELECT there, not many short chunks)."""
    m = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    number = tuple(int(x) for x in m.groups()) if m else (0, 0, 0)
    if "mariadb" in version.lower():
        limit = ["SET SESSION max_statement_time = 0"] if number >= (10, 1, 1) else []
    else:
        limit = ["SET SESSION max_execution_time = 0"] if number >= (5, 7, 8) else []
    return ["SET time_zone = '+00:00'",
            f"SET SESSION lock_wait_timeout = {int(lock_wait_timeout)}",
            f"SET SESSION optimizer_switch = '{OPTIMIZER_SWITCH}'",
            "SET SESSION net_write_timeout = 600", *limit,
            "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"]


def _read_rows(cur, con, client: str | None, transport: str, settings: CiviCRMSettings,
               reads: list[TableRead], *, params: dict, constants: dict, session: list[str],
               max_bytes: int, progress: bool, on_chunk) -> str:
    """Every read's rows into the store's tables; returns how they travelled."""
    used = "server-packed"
    if client is not None:
        try:
            with progress_bar(progress, desc="CiviCRM rows", unit=" rows") as bar:
                dump_tables(client, settings, con, reads,
                            [cur.mogrify(select_sql(r), params) for r in reads],
                            session=session, constants=constants, progress_bar=bar,
                            on_chunk=on_chunk)
            return "mysql client"
        except ClientUnavailable as exc:
            if transport == "client":
                raise
            used = f"server-packed (the command-line client could not connect: {exc})"
    for read in reads:
        stream_table(cur, con, read, read.name, params, max_bytes=max_bytes,
                     constants=constants, progress=progress, on_chunk=on_chunk)
    return used


def _settle_group_row(con, snap_id: int, group: GroupInfo) -> None:
    """The group's row as read with everything else; a NULL is_active (old sites) means
    active, as CiviCRM treats it. A group deleted before the rows were read fails the
    snapshot rather than leaving it without its group."""
    n = con.execute("SELECT count(*) FROM civicrm_group WHERE snapshot_id = ?",
                    [snap_id]).fetchone()[0]
    if n != 1:
        raise ValueError(f"CiviCRM group {group.id} disappeared while the snapshot ran")
    con.execute("UPDATE civicrm_group SET is_active = coalesce(is_active, true),"
                " is_hidden = coalesce(is_hidden, false) WHERE snapshot_id = ?", [snap_id])
