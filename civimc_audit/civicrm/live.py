"""The current state of CiviCRM for the people of a plan, read over one read-only connection.

Apply reads it to settle items an interrupted run left as `sending` (was the change made?),
and to find people changed since the snapshot (drift): their group history since then, and
what decides whether they may be synced (`ContactState`), compared with what the snapshot saw.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass

import pymysql

from civimc_audit.civicrm.columns import Schema, history_sql_time
from civimc_audit.civicrm.db import connect, describe_error
from civimc_audit.common.emails import STRIP_PATTERN, normalize_email
from civimc_audit.config import CiviCRMSettings
from civimc_audit.errors import CiviCRMError
from civimc_audit.store import Store

CONSENT_FIELDS = ("is_deleted", "do_not_email", "is_opt_out", "is_deceased")
CHUNK = 1000


@dataclass(frozen=True)
class ContactState:
    """What of a contact decides whether it may be synced, compared before applying a plan:
    trashed, the consent fields, its email rows (address, on_hold), its group status and the
    ids of its group history rows (a merge moves rows with their old dates)."""

    flags: tuple
    emails: frozenset
    group_status: str | None
    history: frozenset = frozenset()  # (row id, tracking note or '')


def _chunks(values: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def _ids(contact_ids) -> list[int]:
    return list(dict.fromkeys(int(c) for c in contact_ids))


class LiveCiviCRM:
    """Reads of the live CiviCRM database over `conn`, a read-only connection the caller owns
    (`open()` makes one and closes it). A server error becomes one CiviCRMError line."""

    def __init__(self, settings: CiviCRMSettings, conn: pymysql.connections.Connection, *,
                 reopen: Callable[[], pymysql.connections.Connection] | None = None):
        self.settings = settings
        self.conn = conn
        self._reopen = reopen or (lambda: connect(settings))
        self._schema: Schema | None = None

    @classmethod
    @contextmanager
    def open(cls, settings: CiviCRMSettings):
        live = cls(settings, connect(settings))
        try:
            yield live
        finally:
            live.close()

    def connection(self) -> pymysql.connections.Connection:
        """The connection, opened again (with `reopen`) if the server dropped it while it was
        idle, e.g. through a long Mailchimp phase of an apply."""
        try:
            self.conn.ping(reconnect=False)
        except pymysql.err.Error:
            self.close()
            self.conn = self._reopen()
        return self.conn

    def close(self) -> None:
        if self.conn.open:
            self.conn.close()

    @property
    def schema(self) -> Schema:
        """The site's table layout (read by the first cursor)."""
        assert self._schema is not None, "read the schema through _cursor() first"
        return self._schema

    @contextmanager
    def _cursor(self, what: str = "read"):
        try:
            with self.connection().cursor() as cur:
                if self._schema is None:
                    self._schema = Schema.read(cur, self.settings.database)
                yield cur
            self.conn.commit()
        except pymysql.err.MySQLError as exc:
            raise CiviCRMError(f"CiviCRM {what} failed: "
                               f"{describe_error(exc, self.settings.user)}") from None

    # settling interrupted items --------------------------------------------------------------
    def group_statuses(self, group_id: int, contact_ids: list[int]) -> dict[int, str | None]:
        """contact id -> civicrm_group_contact.status for the group (None when there is no row)."""
        out: dict[int, str | None] = dict.fromkeys(contact_ids)
        if not contact_ids:
            return out
        with self._cursor() as cur:
            for chunk in _chunks(list(contact_ids)):
                marks = ", ".join(["%s"] * len(chunk))
                cur.execute(f"SELECT contact_id, status FROM civicrm_group_contact"
                            f" WHERE group_id = %s AND contact_id IN ({marks})",
                            (group_id, *chunk))
                for cid, status in cur.fetchall():
                    out[int(cid)] = status
        return out

    def contacts_owning(self, group_id: int, emails: list[str]
                        ) -> dict[str, list[tuple[int, str | None]]]:
        """lower-cased email -> [(non-deleted contact id, its group status)] for each address."""
        out: dict[str, list[tuple[int, str | None]]] = {normalize_email(e): [] for e in emails}
        if not emails:
            return out
        seen = set()
        with self._cursor() as cur:
            for chunk in _chunks(list(out)):
                marks = ", ".join(["%s"] * len(chunk))
                # SQL TRIM strips only spaces; the shared pattern strips what Python strips.
                cur.execute(
                    "SELECT DISTINCT e.email, c.id, g.status FROM civicrm_email e"
                    " JOIN civicrm_contact c ON c.id = e.contact_id AND c.is_deleted = 0"
                    " LEFT JOIN civicrm_group_contact g ON g.contact_id = c.id AND g.group_id = %s"
                    f" WHERE LOWER(REGEXP_REPLACE(e.email, %s, '')) IN ({marks}) ORDER BY c.id",
                    (group_id, STRIP_PATTERN, *chunk))
                for email, cid, status in cur.fetchall():
                    key = (normalize_email(email), int(cid))
                    if key not in seen:
                        seen.add(key)
                        out.setdefault(key[0], []).append((int(cid), status))
        return out

    def contacts_created_by(self, group_id: int, source: str
                            ) -> dict[str, list[tuple[int, str | None]]]:
        """lower-cased email -> [(contact id, its group status)] of the contacts whose
        civicrm_contact.source is `source` (those a plan's apply created), lowest id first; the
        status of a contact in the trash is 'trashed'."""
        out: dict[str, list[tuple[int, str | None]]] = {}
        with self._cursor() as cur:
            cur.execute(
                "SELECT e.email, c.id, IF(c.is_deleted, 'trashed', g.status)"
                " FROM civicrm_contact c"
                " JOIN civicrm_email e ON e.contact_id = c.id"
                " LEFT JOIN civicrm_group_contact g ON g.contact_id = c.id AND g.group_id = %s"
                " WHERE c.source = %s ORDER BY c.id", (group_id, source))
            for email, cid, status in cur.fetchall():
                out.setdefault(normalize_email(email), []).append((int(cid), status))
        return out

    # drift -----------------------------------------------------------------------------------
    def group_problem(self, group_id: int) -> str | None:
        """Why the group can no longer be written (it was deleted, or made a smart group), or
        None when it is still a static group."""
        with self._cursor("drift check") as cur:
            cur.execute("SELECT saved_search_id FROM civicrm_group WHERE id = %s", (group_id,))
            row = cur.fetchone()
        if row is None:
            return f"the CiviCRM group {group_id} no longer exists"
        if row[0] is not None:
            return f"the CiviCRM group {group_id} is now a smart group"
        return None

    def history_since(self, group_id: int, contact_ids, since_utc) -> dict[int, set[str]]:
        """Contact -> the tracking notes ('' for none) of its group history rows dated after
        `since_utc`, for the contacts among `contact_ids` that have any."""
        ids = _ids(contact_ids)
        if not ids:
            return {}
        out: dict[int, set[str]] = {}
        with self._cursor("drift check") as cur:
            since = history_sql_time(self.schema, self.settings, since_utc)
            for chunk in _chunks(ids, 5000):
                cur.execute(
                    "SELECT DISTINCT contact_id, COALESCE(tracking, '')"
                    " FROM civicrm_subscription_history"
                    " WHERE group_id = %s AND contact_id IN %s AND `date` > %s",
                    (group_id, chunk, since))
                for cid, note in cur.fetchall():
                    out.setdefault(int(cid), set()).add(note)
        return out

    def changed_since(self, group_id: int, contact_ids, since_utc, *,
                      exclude_tracking: str | None = None) -> set[int]:
        """Contacts among `contact_ids` with a subscription_history row for the group dated
        after `since_utc`; rows whose tracking note is `exclude_tracking` (a plan's own
        writes) do not count."""
        notes = self.history_since(group_id, contact_ids, since_utc)
        return {c for c, seen in notes.items() if seen - {exclude_tracking}}

    def contact_states(self, group_id: int, contact_ids) -> dict[int, ContactState]:
        """The current ContactState of each contact among `contact_ids` that still exists."""
        ids = _ids(contact_ids)
        if not ids:
            return {}
        flags: dict[int, tuple] = {}
        emails: dict[int, set] = {}
        groups: dict[int, str] = {}
        history: dict[int, set] = {}
        with self._cursor("drift check") as cur:
            cols = ", ".join(f"`{c}`" if self.schema.has("civicrm_contact", c) else "NULL"
                             for c in CONSENT_FIELDS)
            for chunk in _chunks(ids, 5000):
                cur.execute(f"SELECT id, {cols} FROM civicrm_contact WHERE id IN %s", (chunk,))
                for row in cur.fetchall():
                    flags[int(row[0])] = _flags(row[1:])
                cur.execute("SELECT contact_id, email, on_hold FROM civicrm_email"
                            " WHERE contact_id IN %s", (chunk,))
                for cid, email, hold in cur.fetchall():
                    emails.setdefault(int(cid), set()).add((email, int(hold or 0)))
                cur.execute("SELECT contact_id, status FROM civicrm_group_contact"
                            " WHERE group_id = %s AND contact_id IN %s", (group_id, chunk))
                groups.update((int(cid), status) for cid, status in cur.fetchall())
                cur.execute("SELECT contact_id, id, COALESCE(tracking, '')"
                            " FROM civicrm_subscription_history"
                            " WHERE group_id = %s AND contact_id IN %s", (group_id, chunk))
                for cid, hid, note in cur.fetchall():
                    history.setdefault(int(cid), set()).add((int(hid), note))
        return _states(flags, emails, groups, history)


def snapshot_contact_states(store: Store, snapshot_id: int, group_id: int, contact_ids
                            ) -> dict[int, ContactState]:
    """The ContactState of each contact among `contact_ids` as a CiviCRM snapshot saw it."""
    ids = sorted({int(c) for c in contact_ids})
    if not ids:
        return {}
    con = store.con
    cols = ", ".join(CONSENT_FIELDS)
    flags = {int(r[0]): _flags(r[1:]) for r in con.execute(
        f"SELECT id, {cols} FROM civicrm_contact WHERE snapshot_id = ?"
        " AND id IN (SELECT unnest(?))", [snapshot_id, ids]).fetchall()}
    emails: dict[int, set] = {}
    for cid, email, hold in con.execute(
            "SELECT contact_id, email, on_hold FROM civicrm_email WHERE snapshot_id = ?"
            " AND contact_id IN (SELECT unnest(?))", [snapshot_id, ids]).fetchall():
        emails.setdefault(int(cid), set()).add((email, int(hold or 0)))
    groups = dict(con.execute(
        "SELECT contact_id, status FROM civicrm_group_contact WHERE snapshot_id = ?"
        " AND group_id = ? AND contact_id IN (SELECT unnest(?))",
        [snapshot_id, group_id, ids]).fetchall())
    history: dict[int, set] = {}
    for cid, hid in con.execute(
            "SELECT contact_id, id FROM civicrm_subscription_history WHERE snapshot_id = ?"
            " AND group_id = ? AND contact_id IN (SELECT unnest(?))",
            [snapshot_id, group_id, ids]).fetchall():
        history.setdefault(int(cid), set()).add((int(hid), None))  # notes are not stored
    return _states(flags, emails, groups, history)


def _states(flags: dict, emails: dict, groups: dict, history: dict) -> dict[int, ContactState]:
    return {cid: ContactState(f, frozenset(emails.get(cid, ())), groups.get(cid),
                              frozenset(history.get(cid, ())))
            for cid, f in flags.items()}


def _flags(values) -> tuple:
    return tuple(None if v is None else bool(v) for v in values)
