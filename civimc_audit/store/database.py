"""The audit store: one DuckDB file holding snapshots, reconciliations, plans and the journal.

Snapshots are immutable once finished: every row carries its `snapshot_id`, and nothing updates
or deletes rows of a finished snapshot except retention pruning of whole snapshots. Timestamps
are stored as naive TIMESTAMP values meaning UTC.
"""

from __future__ import annotations

import json
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb

from civimc_audit.common.crashpoints import checkpoint
from civimc_audit.common.files import make_private, private_dir, private_umask
from civimc_audit.common.times import utcnow
from civimc_audit.errors import StoreError


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None):
    """The first column of the first row `sql` returns (None when it returns no row)."""
    row = con.execute(sql, params or []).fetchone()
    return None if row is None else row[0]


# Each entry is one schema version (SQL, or a function of the connection); append, never edit a
# released one.
MIGRATIONS: list = [
    """
    CREATE SEQUENCE snapshot_ids START 1;
    CREATE TABLE snapshots (
        id INTEGER PRIMARY KEY DEFAULT nextval('snapshot_ids'),
        source VARCHAR NOT NULL CHECK (source IN ('civicrm', 'mailchimp')),
        started_at TIMESTAMP NOT NULL,
        taken_at TIMESTAMP,
        status VARCHAR NOT NULL CHECK (status IN ('running', 'complete', 'incomplete', 'failed')),
        row_counts JSON,
        meta JSON,
        message VARCHAR
    );
    CREATE TABLE civicrm_group (
        snapshot_id INTEGER NOT NULL, id BIGINT NOT NULL, name VARCHAR, title VARCHAR,
        group_type VARCHAR, saved_search_id BIGINT, is_active BOOLEAN, is_hidden BOOLEAN
    );
    CREATE TABLE civicrm_contact (
        snapshot_id INTEGER NOT NULL, id BIGINT NOT NULL, contact_type VARCHAR,
        first_name VARCHAR, last_name VARCHAR, display_name VARCHAR, is_deleted BOOLEAN,
        do_not_email BOOLEAN, is_opt_out BOOLEAN, is_deceased BOOLEAN
    );
    CREATE TABLE civicrm_email (
        snapshot_id INTEGER NOT NULL, id BIGINT NOT NULL, contact_id BIGINT, email VARCHAR,
        is_primary BOOLEAN, is_bulkmail BOOLEAN, on_hold INTEGER, location_type_id BIGINT
    );
    CREATE TABLE civicrm_group_contact (
        snapshot_id INTEGER NOT NULL, id BIGINT NOT NULL, group_id BIGINT, contact_id BIGINT,
        status VARCHAR
    );
    CREATE TABLE civicrm_subscription_history (
        snapshot_id INTEGER NOT NULL, id BIGINT NOT NULL, contact_id BIGINT, group_id BIGINT,
        date TIMESTAMP, method VARCHAR, status VARCHAR
    );
    CREATE TABLE mailchimp_list (
        snapshot_id INTEGER NOT NULL, id VARCHAR NOT NULL, name VARCHAR, member_count BIGINT,
        total_items BIGINT
    );
    CREATE TABLE mailchimp_member (
        snapshot_id INTEGER NOT NULL, id VARCHAR NOT NULL, email_address VARCHAR,
        status VARCHAR, last_changed TIMESTAMP, fname VARCHAR, lname VARCHAR,
        merge_fields JSON, unique_email_id VARCHAR, contact_id VARCHAR,
        timestamp_opt TIMESTAMP
    );
    CREATE SEQUENCE reconciliation_ids START 1;
    CREATE TABLE reconciliations (
        id INTEGER PRIMARY KEY DEFAULT nextval('reconciliation_ids'),
        civicrm_snapshot_id INTEGER NOT NULL,
        mailchimp_snapshot_id INTEGER NOT NULL,
        created_at TIMESTAMP NOT NULL,
        policy JSON,
        counts JSON
    );
    CREATE TABLE outcomes (
        reconciliation_id INTEGER NOT NULL,
        person_id INTEGER NOT NULL,
        email VARCHAR,
        contact_id BIGINT,
        member_id VARCHAR,
        display_name VARCHAR,
        mailchimp_status VARCHAR,
        mailchimp_changed TIMESTAMP,
        civicrm_status VARCHAR,
        civicrm_changed TIMESTAMP,
        civicrm_history_status VARCHAR,
        winner VARCHAR,
        outcome VARCHAR NOT NULL,
        rule VARCHAR NOT NULL,
        reason_code VARCHAR,
        reason VARCHAR NOT NULL,
        flags VARCHAR NOT NULL,
        target_email VARCHAR
    );
    """,
    # issue 6: change sets (plans), review decisions, the apply journal and apply locks.
    """
    CREATE SEQUENCE plan_ids START 1;
    CREATE TABLE plans (
        id INTEGER PRIMARY KEY DEFAULT nextval('plan_ids'),
        token VARCHAR NOT NULL,
        reconciliation_id INTEGER NOT NULL,
        civicrm_snapshot_id INTEGER NOT NULL,
        mailchimp_snapshot_id INTEGER NOT NULL,
        group_id BIGINT,
        list_id VARCHAR,
        created_at TIMESTAMP NOT NULL,
        status VARCHAR NOT NULL CHECK (status IN ('open', 'frozen')),
        allow_pending BOOLEAN NOT NULL DEFAULT false,
        frozen_at TIMESTAMP,
        frozen_hash VARCHAR,
        frozen_reviewers JSON,
        frozen_by VARCHAR
    );
    CREATE TABLE plan_items (
        plan_id INTEGER NOT NULL,
        item_id INTEGER NOT NULL,
        person_id INTEGER NOT NULL,
        target VARCHAR NOT NULL CHECK (target IN ('mailchimp', 'civicrm')),
        action VARCHAR NOT NULL,
        outcome VARCHAR NOT NULL,
        rule VARCHAR NOT NULL,
        reason_code VARCHAR,
        flags VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        email VARCHAR,
        contact_id BIGINT,
        member_id VARCHAR,
        display_name VARCHAR,
        mailchimp_status VARCHAR,
        mailchimp_changed TIMESTAMP,
        civicrm_status VARCHAR,
        civicrm_changed TIMESTAMP,
        payload JSON NOT NULL,
        PRIMARY KEY (plan_id, item_id)
    );
    CREATE SEQUENCE decision_seq START 1;
    CREATE TABLE decisions (
        seq BIGINT PRIMARY KEY DEFAULT nextval('decision_seq'),
        plan_id INTEGER NOT NULL,
        item_id INTEGER NOT NULL,
        decision VARCHAR NOT NULL CHECK (decision IN ('approved', 'rejected')),
        reviewer VARCHAR NOT NULL,
        decided_at TIMESTAMP NOT NULL,
        note VARCHAR,
        via VARCHAR NOT NULL
    );
    CREATE SEQUENCE apply_run_ids START 1;
    CREATE TABLE apply_runs (
        id INTEGER PRIMARY KEY DEFAULT nextval('apply_run_ids'),
        plan_id INTEGER NOT NULL,
        started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP,
        execute BOOLEAN NOT NULL,
        pid INTEGER,
        host VARCHAR,
        folder VARCHAR,
        status VARCHAR NOT NULL,
        counts JSON
    );
    CREATE SEQUENCE journal_seq START 1;
    CREATE TABLE journal (
        seq BIGINT PRIMARY KEY DEFAULT nextval('journal_seq'),
        plan_id INTEGER NOT NULL,
        item_id INTEGER NOT NULL,
        run_id INTEGER NOT NULL,
        state VARCHAR NOT NULL CHECK (state IN ('sending', 'done', 'failed', 'stale')),
        journaled_at TIMESTAMP NOT NULL,
        sent JSON,
        title VARCHAR,
        detail VARCHAR
    );
    CREATE TABLE apply_locks (
        plan_id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL,
        pid INTEGER NOT NULL,
        host VARCHAR NOT NULL,
        acquired_at TIMESTAMP NOT NULL
    );
    """,
    # Snapshot rows are the bulk of the store: their strings are compressed with zstd, which
    # costs a snapshot about half the CPU of the default dictionary+FSST for the same size;
    # Mailchimp's first and last names are read out of merge_fields when asked for, not stored,
    # and its unique_email_id and timestamp_opt, which nothing uses, are no longer kept.
    lambda con: _rebuild_tables(con, _SNAPSHOT_TABLES_V3, "v3"),
    # Virtual columns are computed when rows are inserted (DuckDB checks them), so fname/lname
    # cost a million-member snapshot about 0.7 CPU-s; names are read out of merge_fields by the
    # one query that needs them (plan creation) instead.
    """
    ALTER TABLE mailchimp_member DROP COLUMN fname;
    ALTER TABLE mailchimp_member DROP COLUMN lname;
    """,
    # Outcome rows are written a million at a time, and their sentences and addresses cost
    # DuckDB's default compression twice what zstd takes (0.8 s of a 7 s reconcile).
    lambda con: _rebuild_tables(con, _OUTCOMES_V5, "v5"),
    # issue 17: date evidence. For a pair of snapshots, the time of each contested member's
    # latest subscription event in Mailchimp's activity feed (state 'read'; status_changed NULL
    # when the feed records none) or why the feed could not be read ('unreadable'); reconcile
    # reads it offline, and outcome rows show it.
    """
    CREATE TABLE mailchimp_evidence (
        mailchimp_snapshot_id INTEGER NOT NULL,
        civicrm_snapshot_id INTEGER NOT NULL,
        member_id VARCHAR NOT NULL,
        state VARCHAR NOT NULL CHECK (state IN ('read', 'unreadable')),
        status_changed TIMESTAMP,
        status_event VARCHAR,
        detail VARCHAR
    );
    ALTER TABLE outcomes ADD COLUMN mailchimp_status_changed TIMESTAMP;
    """,
    # issue 20: a reviewer can withdraw a decision; the withdrawal is a decision row of its own
    # ('undecided', with who and when), so the latest row stays the item's decision.
    lambda con: _rebuild_tables(con, _DECISIONS_WITHDRAWABLE, "withdrawable"),
    # Interest groups (DESIGN "Interest groups"): each member's interests as Mailchimp sent
    # them (JSON text, interest id -> true/false), the audience's interest catalogue, and one
    # outcome row per person and mapped interest (rules I1–I6), its sentence in zstd as the
    # outcomes' are. The person's address and name stay in their outcome row (person_id): writing
    # them again per interest was half the cost of the interest rules.
    lambda con: _interest_tables(con),
    # Interest groups in plans: an item of an interest change names the Mailchimp interest (id
    # and name, as the snapshot's catalogue had it) and the CiviCRM group mapped to it; both stay
    # NULL on the subscription group's items.
    """
    ALTER TABLE plan_items ADD COLUMN interest_id VARCHAR;
    ALTER TABLE plan_items ADD COLUMN interest_name VARCHAR;
    ALTER TABLE plan_items ADD COLUMN civicrm_group_id BIGINT;
    """,
]

# The snapshot tables as of migration 3; `{z}` marks the columns stored with zstd.
_SNAPSHOT_TABLES_V3: dict[str, tuple[str, str]] = {
    "civicrm_contact": (
        "snapshot_id INTEGER NOT NULL, id BIGINT NOT NULL, contact_type VARCHAR,"
        " first_name VARCHAR{z}, last_name VARCHAR{z}, display_name VARCHAR{z},"
        " is_deleted BOOLEAN, do_not_email BOOLEAN, is_opt_out BOOLEAN, is_deceased BOOLEAN",
        "*"),
    "civicrm_email": (
        "snapshot_id INTEGER NOT NULL, id BIGINT NOT NULL, contact_id BIGINT, email VARCHAR{z},"
        " is_primary BOOLEAN, is_bulkmail BOOLEAN, on_hold INTEGER, location_type_id BIGINT",
        "*"),
    "mailchimp_member": (
        "snapshot_id INTEGER NOT NULL, id VARCHAR{z} NOT NULL, email_address VARCHAR{z},"
        # merge_fields holds the JSON text as Mailchimp sent it, typed VARCHAR: DuckDB 1.3
        # could neither compress a JSON column nor bind JSON functions on it in a table
        # definition (1.5, the floor now, can; the snapshot was measured with VARCHAR).
        " status VARCHAR, last_changed TIMESTAMP, merge_fields VARCHAR{z}, contact_id VARCHAR{z},"
        " fname VARCHAR GENERATED ALWAYS AS"
        " (NULLIF(json_extract_string(merge_fields, '$.FNAME'), '')) VIRTUAL,"
        " lname VARCHAR GENERATED ALWAYS AS"
        " (NULLIF(json_extract_string(merge_fields, '$.LNAME'), '')) VIRTUAL",
        # Rows stored before: names the merge fields lacked are kept in them.
        "snapshot_id, id, email_address, status, last_changed,"
        " CASE WHEN merge_fields IS NULL AND (fname IS NOT NULL OR lname IS NOT NULL)"
        " THEN json_object('FNAME', coalesce(fname, ''), 'LNAME', coalesce(lname, ''))"
        " ELSE merge_fields END, contact_id"),
}


# The outcomes table as of migration 5.
_OUTCOMES_V5: dict[str, tuple[str, str]] = {
    "outcomes": (
        "reconciliation_id INTEGER NOT NULL, person_id INTEGER NOT NULL, email VARCHAR{z},"
        " contact_id BIGINT, member_id VARCHAR{z}, display_name VARCHAR{z},"
        " mailchimp_status VARCHAR, mailchimp_changed TIMESTAMP, civicrm_status VARCHAR,"
        " civicrm_changed TIMESTAMP, civicrm_history_status VARCHAR, winner VARCHAR,"
        " outcome VARCHAR NOT NULL, rule VARCHAR NOT NULL, reason_code VARCHAR,"
        " reason VARCHAR{z} NOT NULL, flags VARCHAR NOT NULL, target_email VARCHAR{z}",
        "*"),
}


# The decisions table once a decision can be withdrawn.
_DECISIONS_WITHDRAWABLE: dict[str, tuple[str, str]] = {
    "decisions": (
        "seq BIGINT PRIMARY KEY DEFAULT nextval('decision_seq'), plan_id INTEGER NOT NULL,"
        " item_id INTEGER NOT NULL,"
        " decision VARCHAR NOT NULL CHECK (decision IN ('approved', 'rejected', 'undecided')),"
        " reviewer VARCHAR NOT NULL, decided_at TIMESTAMP NOT NULL, note VARCHAR,"
        " via VARCHAR NOT NULL",
        "*"),
}


def _interest_tables(con) -> None:
    z = " USING COMPRESSION zstd" if zstd_available(con) else ""
    con.execute("ALTER TABLE mailchimp_member ADD COLUMN interests VARCHAR")
    con.execute("CREATE TABLE mailchimp_interest (snapshot_id INTEGER NOT NULL,"
                " category_id VARCHAR, category_title VARCHAR, id VARCHAR NOT NULL, name VARCHAR)")
    con.execute(f"""
    CREATE TABLE interest_outcomes (
        reconciliation_id INTEGER NOT NULL, person_id INTEGER NOT NULL, contact_id BIGINT,
        interest_id VARCHAR NOT NULL, interest_name VARCHAR, category_title VARCHAR,
        civicrm_group_id BIGINT NOT NULL, civicrm_group_title VARCHAR,
        mailchimp_interest BOOLEAN, civicrm_status VARCHAR, civicrm_changed TIMESTAMP,
        mailchimp_changed TIMESTAMP, winner VARCHAR, outcome VARCHAR NOT NULL,
        rule VARCHAR NOT NULL, reason_code VARCHAR, reason VARCHAR{z} NOT NULL
    )""")


def zstd_available(con) -> bool:
    """Can this database file store columns with zstd? (Files in DuckDB's pre-1.2 storage
    format cannot; DuckDB 1.x makes new files in that format unless told otherwise.)"""
    row = con.execute("SELECT tags['storage_version'] FROM duckdb_databases()"
                      " WHERE database_name = current_database()").fetchone()
    return _has_zstd((row[0] if row else None) or "")


def _has_zstd(storage_version: str) -> bool:
    """'v1.2.0+', 'v1.4.0', 'latest' -> whether that storage format has zstd."""
    if storage_version == "latest":
        return True
    return tuple(int(d) for d in re.findall(r"\d+", storage_version)[:3]) >= (1, 2, 0)


def _rebuild_tables(con, tables: dict, version: str) -> None:
    """Make each table again from its (columns, what to copy from the old table), with zstd on
    the columns marked `{z}` where the file can hold it."""
    z = " USING COMPRESSION zstd" if zstd_available(con) else ""
    for table, (columns, old) in tables.items():
        con.execute(f"CREATE TABLE {table}_{version} ({columns.format(z=z)})")
        con.execute(f"INSERT INTO {table}_{version} SELECT {old} FROM {table}")
        con.execute(f"DROP TABLE {table}")
        con.execute(f"ALTER TABLE {table}_{version} RENAME TO {table}")


SNAPSHOT_TABLES = {
    "civicrm": ["civicrm_group", "civicrm_contact", "civicrm_email", "civicrm_group_contact",
                "civicrm_subscription_history"],
    "mailchimp": ["mailchimp_list", "mailchimp_member", "mailchimp_interest"],
}


def _new_file_config() -> dict:
    """New stores are made in a storage format that has zstd (DuckDB 1.2's or later); DuckDB
    1.x would otherwise make them readable by 0.10, without it."""
    with duckdb.connect(config={"autoinstall_known_extensions": False}) as con:
        default = scalar(con, "SELECT current_setting('storage_compatibility_version')")
    return {} if _has_zstd(default) else {"storage_compatibility_version": "v1.2.0"}


#: The config a new store file is made with: _new_file_config(), asked once, when the first
#: new file is made (it opens a database, which every command would otherwise pay at start-up).
_NEW_FILE_CONFIG: dict | None = None


def new_file_config() -> dict:
    global _NEW_FILE_CONFIG
    if _NEW_FILE_CONFIG is None:
        _NEW_FILE_CONFIG = _new_file_config()
    return _NEW_FILE_CONFIG

#: Extensions are never downloaded when a store's write-ahead log is replayed. The store needs
#: json (JSON columns, and json functions in table definitions that replaying the log of a
#: store killed mid-write binds again). DuckDB's package has it built in, but with automatic
#: installs on (DuckDB's default), replay tried to download it first, so a store whose first
#: process was killed could not be opened without internet. Autoload stays on: it loads the
#: built-in copy.
OFFLINE_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": True}


def _connect(path: Path, read_only: bool, config: dict) -> duckdb.DuckDBPyConnection:
    """A connection to the store file, a left-over write-ahead log replayed offline first.

    The replay runs on a connection of its own with OFFLINE_CONFIG and is checkpointed into the
    file; the store's connection then asks for no setting beyond `config`, so a plain
    connection in the same process (a notebook's) can open the file beside it. Where this
    process has the file open already (its settings differ, DuckDB refuses a second set) there
    is nothing to replay. A read-only store cannot checkpoint, so it keeps the replaying one.
    """
    if path.with_name(path.name + ".wal").exists():
        try:
            con = duckdb.connect(str(path), read_only=read_only,
                                 config={**config, **OFFLINE_CONFIG})
        except duckdb.ConnectionException:
            con = None
        if con is not None and read_only:
            return con
        if con is not None:
            con.execute("CHECKPOINT")
            con.close()
    return duckdb.connect(str(path), read_only=read_only, config=config)


@dataclass(frozen=True)
class Snapshot:
    """One snapshot's registry row."""

    id: int
    source: str
    started_at: datetime
    taken_at: datetime | None
    status: str
    row_counts: dict
    meta: dict
    message: str | None = None


class Store:
    """The audit DuckDB file; use as a context manager, or call `close()`."""

    def __init__(self, path: str | Path, read_only: bool = False):
        self.path = Path(path)
        if read_only and not self.path.exists():
            raise StoreError(f"audit store {self.path} does not exist yet: run `civimc-audit "
                             "snapshot` first")
        private_dir(self.path.parent)
        if not read_only:
            # A writer's write-ahead log (personal data, and left behind by a kill) is created
            # by DuckDB with the process umask: from here on this process creates owner-only.
            private_umask()
        try:
            # The storage format is the file's own once made; asking for it again would stop
            # other connections in this process from opening the file with no settings.
            config = {} if self.path.exists() else new_file_config()
            self.con = _connect(self.path, read_only, config)
        except duckdb.IOException as exc:
            raise StoreError(f"cannot open audit store {self.path}: {exc}") from None
        if not read_only and self.path.exists():  # (not ":memory:")
            make_private(self.path)  # DuckDB creates it with the umask's mode
        self.con.execute("SET TimeZone = 'UTC'")
        # Nor is anything downloaded later (set on the open database, so a plain connection in
        # this process can still open the file).
        self.con.execute("SET autoinstall_known_extensions = false")
        if not read_only:
            self.migrate()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        checkpoint("store_close")
        self.con.close()

    # schema ---------------------------------------------------------------------------------
    def migrate(self) -> None:
        """Bring the schema to the newest version, one transaction per step."""
        self.con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        current = scalar(self.con, "SELECT max(version) FROM schema_version") or 0
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version <= current:
                continue
            with self.transaction():
                if callable(sql):
                    sql(self.con)
                else:
                    self.con.execute(sql)
                self.con.execute("INSERT INTO schema_version VALUES (?)", [version])
            checkpoint("store_migrated")
        if current < len(MIGRATIONS):
            # The new schema goes into the file at once, so the write-ahead log never holds
            # table definitions (replaying them needs the json extension; see _connect).
            self.con.execute("CHECKPOINT")

    @contextmanager
    def transaction(self):
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    # snapshot registry ----------------------------------------------------------------------
    def begin_snapshot(self, source: str, meta: dict | None = None, *,
                       abandon_running: bool = False) -> int:
        """Register a new running snapshot; returns its id.

        With `abandon_running` (the caller holds the store's writer lock, so no other process
        is taking a snapshot), a snapshot of the same source still marked running was left by
        a process that died mid-way: it is marked failed and its rows dropped first."""
        if abandon_running:
            for (sid,) in self.con.execute(
                    "SELECT id FROM snapshots WHERE source = ? AND status = 'running'",
                    [source]).fetchall():
                self.fail_snapshot(sid, f"{source} snapshot {sid} was interrupted: the process "
                                   "taking it ended before it finished; nothing of it is used")
        return scalar(
            self.con,
            "INSERT INTO snapshots (source, started_at, status, meta) VALUES (?, ?, 'running', ?)"
            " RETURNING id",
            [source, utcnow(), json.dumps(meta or {})],
        )

    def finish_snapshot(self, snapshot_id: int, *, complete: bool = True,
                        meta: dict | None = None, message: str | None = None) -> Snapshot:
        """Count the snapshot's rows and mark it complete (or incomplete, with why)."""
        snap = self.snapshot(snapshot_id)
        if snap.status != "running":
            raise StoreError(f"{snap.source} snapshot {snapshot_id} is {snap.status}, not "
                             "running; it cannot be finished")
        counts = {t: scalar(self.con, f"SELECT count(*) FROM {t} WHERE snapshot_id = ?", [snapshot_id])
                  for t in SNAPSHOT_TABLES[snap.source]}
        merged = {**snap.meta, **(meta or {})}
        self.con.execute(
            "UPDATE snapshots SET taken_at = ?, status = ?, row_counts = ?, meta = ?, message = ?"
            " WHERE id = ?",
            [utcnow(), "complete" if complete else "incomplete", json.dumps(counts),
             json.dumps(merged), message, snapshot_id],
        )
        return self.snapshot(snapshot_id)

    def add_snapshot_meta(self, snapshot_id: int, meta: dict) -> Snapshot:
        """Merge `meta` into a snapshot's meta (what a later step learnt about it, e.g. the
        activity-feed requests of the date evidence); its rows stay as they are."""
        snap = self.snapshot(snapshot_id)
        self.con.execute("UPDATE snapshots SET meta = ? WHERE id = ?",
                         [json.dumps({**snap.meta, **meta}), snapshot_id])
        return self.snapshot(snapshot_id)

    def fail_snapshot(self, snapshot_id: int, message: str) -> None:
        """Mark a snapshot failed and drop its rows, so nothing partial is ever used."""
        snap = self.snapshot(snapshot_id)
        with self.transaction():
            for table in SNAPSHOT_TABLES[snap.source]:
                self.con.execute(f"DELETE FROM {table} WHERE snapshot_id = ?", [snapshot_id])
            self.con.execute("UPDATE snapshots SET status = 'failed', message = ? WHERE id = ?",
                             [message, snapshot_id])

    def snapshot(self, snapshot_id: int) -> Snapshot:
        row = self.con.execute(
            "SELECT id, source, started_at, taken_at, status, row_counts, meta, message"
            " FROM snapshots WHERE id = ?", [snapshot_id]).fetchone()
        if row is None:
            raise StoreError(f"no snapshot {snapshot_id} in {self.path}")
        return Snapshot(row[0], row[1], row[2], row[3], row[4], json.loads(row[5] or "{}"),
                        json.loads(row[6] or "{}"), row[7])

    def latest_snapshot(self, source: str) -> Snapshot | None:
        row = self.con.execute(
            "SELECT id FROM snapshots WHERE source = ? AND status = 'complete'"
            " ORDER BY taken_at DESC, id DESC LIMIT 1", [source]).fetchone()
        return self.snapshot(row[0]) if row else None

    def snapshots(self) -> list[Snapshot]:
        ids = [r[0] for r in self.con.execute("SELECT id FROM snapshots ORDER BY id").fetchall()]
        return [self.snapshot(i) for i in ids]

    # reconciliations ------------------------------------------------------------------------
    def latest_reconciliation(self) -> int | None:
        return scalar(self.con, "SELECT max(id) FROM reconciliations")

    def reconciliation(self, reconciliation_id: int | None = None) -> dict:
        rid = reconciliation_id or self.latest_reconciliation()
        if rid is None:
            raise StoreError("no reconciliation in the store yet: run `civimc-audit reconcile`")
        row = self.con.execute(
            "SELECT id, civicrm_snapshot_id, mailchimp_snapshot_id, created_at, policy, counts"
            " FROM reconciliations WHERE id = ?", [rid]).fetchone()
        if row is None:
            raise StoreError(f"no reconciliation {rid} in {self.path}")
        return {"id": row[0], "civicrm_snapshot_id": row[1], "mailchimp_snapshot_id": row[2],
                "created_at": row[3], "policy": json.loads(row[4] or "{}"),
                "counts": json.loads(row[5] or "{}")}


@contextmanager
def open_store(path: Path, wait: float = 60.0):
    """The store, waiting while another process holds DuckDB's file lock for a moment (up to
    `wait` seconds, checking again after 0.02 s, 0.04 s, … at most 0.5 s apart)."""
    try:
        store = Store(path)
    except StoreError as exc:
        if "lock" not in str(exc).lower():
            raise
        # Imported only here: tenacity costs a command's start-up time every run.
        from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

        store = Retrying(stop=stop_after_delay(wait),
                         wait=wait_exponential(multiplier=0.02, max=0.5),
                         retry=retry_if_exception(lambda e: isinstance(e, StoreError)
                                                  and "lock" in str(e).lower()),
                         reraise=True)(Store, path)
    try:
        yield store
    finally:
        store.close()
