"""Writes approved changes into CiviCRM the way CiviCRM itself stores them.

Group changes mirror APIv4 `GroupContact.save` with `match: [group_id, contact_id]` (what the
reference recommends): the one `civicrm_group_contact` row per contact and group is updated in
place or created (never REPLACEd, so its id survives), and a `civicrm_subscription_history` row is
written beside it with date = now, method 'API' and a tracking note naming the plan — what core's
GroupContact post hook writes. A contact already in the wanted state gets nothing written, so
re-applying a done (or half-done) batch is harmless.

Every call commits in transactions of at most `batch_size` contacts, through the separate write
account (`write_user`, password in CIVIMC_CIVICRM_WRITE_PASSWORD).
"""

from __future__ import annotations

import contextlib
import secrets
import string
from collections.abc import Iterable
from datetime import UTC

import pymysql

from civimc_audit.civicrm.columns import Schema, history_sql_time, local_now, site_zone
from civimc_audit.civicrm.db import connect, describe_error
from civimc_audit.common.emails import normalize_email, strip_email
from civimc_audit.config import CiviCRMSettings
from civimc_audit.errors import CiviCRMError, ConfigError

METHOD = "API"
SOURCE = "civimc-audit"
_HASH_ALPHABET = string.ascii_letters + string.digits


def display_names(first_name: str | None, last_name: str | None, email: str) -> tuple[str, str]:
    """(display_name, sort_name) as CiviCRM forms them with its default formats.

    Core (CRM_Contact_BAO_Individual::format) trims the names, builds display_name from
    "{first_name}{ }{last_name}" and sort_name from "{last_name}{, }{first_name}" (separators
    dropped next to an empty part), and falls back to the email when there is no name.
    """
    first = (first_name or "").strip()
    last = (last_name or "").strip()
    display = " ".join(p for p in (first, last) if p) or email
    sort = ", ".join(p for p in (last, first) if p) or email
    return display[:128], sort[:128]


def source_note(tracking: str) -> str:
    """civicrm_contact.source of a contact created for `tracking` (how a resumed apply knows
    the contacts its plan created)."""
    return f"{SOURCE}: {tracking}"[:255]


def _chunks(items: list[int], size: int) -> Iterable[list[int]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class CiviCRMWriter:
    """Group adds/removals, new contacts and on-hold flags, written as CiviCRM writes them.

    Per-contact results are "done" (written now), "already" (was in that state; nothing written)
    or "missing" (no such contact any more, or it is in the trash — deleted since the snapshot;
    nothing written).
    """

    def __init__(self, settings: CiviCRMSettings, *, batch_size: int = 200,
                 lock_wait_timeout: int | None = None):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.settings = settings
        self.batch_size = batch_size
        self.user = settings.write_user or ""
        self.conn = connect(settings, write=True)
        try:
            with self.conn.cursor() as cur:
                if lock_wait_timeout is not None:
                    cur.execute("SET SESSION innodb_lock_wait_timeout = %s", (lock_wait_timeout,))
                self.schema = Schema.read(cur, settings.database)
                # Lock only the rows of this batch: through the (contact_id, group_id) unique
                # key, never the group_id index (which would lock every member of the group).
                cur.execute("SELECT INDEX_NAME FROM information_schema.STATISTICS"
                            " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'civicrm_group_contact'"
                            " AND NON_UNIQUE = 0 AND SEQ_IN_INDEX = 1 AND COLUMN_NAME = 'contact_id'",
                            (settings.database,))
                row = cur.fetchone()
                self._member_key = f"FORCE INDEX (`{row[0]}`)" if row else ""
            self.conn.commit()
        except pymysql.err.MySQLError as exc:
            self.conn.close()
            raise CiviCRMError(f"CiviCRM writer could not start: {describe_error(exc, self.user)}"
                               ) from None
        if self.schema.history_date_is_datetime:
            try:
                site_zone(settings)  # a DATETIME history date needs the site's zone: say so now
            except ConfigError:
                self.conn.close()
                raise
        self.schema.require("civicrm_group_contact", "group_id", "contact_id", "status")
        self.schema.require("civicrm_subscription_history", "contact_id", "group_id", "date",
                            "method", "status", "tracking")
        self._checked_groups: set[int] = set()

    def __enter__(self) -> CiviCRMWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.conn.open:
            self.conn.close()

    # group membership ------------------------------------------------------------------------
    def add_to_group(self, group_id: int, contact_ids: list[int], tracking: str) -> dict[int, str]:
        """Make each contact 'Added' to the group, with a history row for each one changed."""
        return self._set_status(group_id, contact_ids, "Added", tracking)

    def remove_from_group(self, group_id: int, contact_ids: list[int],
                          tracking: str) -> dict[int, str]:
        """Make each contact 'Removed' from the group (a row is kept, as core's opt-out)."""
        return self._set_status(group_id, contact_ids, "Removed", tracking)

    def _set_status(self, group_id: int, contact_ids: list[int], status: str,
                    tracking: str) -> dict[int, str]:
        ids = list(dict.fromkeys(int(c) for c in contact_ids))
        results: dict[int, str] = {}
        if not ids:
            return results
        what = f"{'adding to' if status == 'Added' else 'removing from'} group {group_id}"
        self._check_group(group_id)
        for batch in _chunks(ids, self.batch_size):
            results.update(self._in_transaction(
                what, lambda cur, b=batch: self._status_batch(cur, group_id, b, status, tracking)))
        return results

    def _status_batch(self, cur, group_id: int, batch: list[int], status: str,
                      tracking: str) -> dict[int, str]:
        # A trashed contact counts as gone: nothing is written for it.
        cur.execute("SELECT id FROM civicrm_contact WHERE id IN %s AND is_deleted = 0",
                    (batch,))
        existing = {row[0] for row in cur.fetchall()}
        cur.execute(f"SELECT contact_id, status FROM civicrm_group_contact {self._member_key}"
                    " WHERE contact_id IN %s AND group_id = %s FOR UPDATE", (batch, group_id))
        current = dict(cur.fetchall())
        todo = [c for c in batch if c in existing and current.get(c) != status]
        if todo:
            when = history_sql_time(self.schema, self.settings, self._server_now(cur))
            cur.executemany(
                "INSERT INTO civicrm_group_contact (group_id, contact_id, status) VALUES (%s,%s,%s)"
                " ON DUPLICATE KEY UPDATE status = VALUES(status)",
                [(group_id, c, status) for c in todo])
            cur.executemany(
                "INSERT INTO civicrm_subscription_history"
                " (contact_id, group_id, `date`, method, status, tracking)"
                " VALUES (%s,%s,%s,%s,%s,%s)",
                [(c, group_id, when, METHOD, status, tracking[:255]) for c in todo])
        done = set(todo)
        return {c: "missing" if c not in existing else ("done" if c in done else "already")
                for c in batch}

    def _check_group(self, group_id: int) -> None:
        if group_id in self._checked_groups:
            return

        def check(cur):
            cur.execute("SELECT saved_search_id FROM civicrm_group WHERE id = %s", (group_id,))
            row = cur.fetchone()
            if row is None:
                raise CiviCRMError(f"CiviCRM group {group_id} does not exist")
            if row[0] is not None:
                raise CiviCRMError(f"CiviCRM group {group_id} is a smart group; only static "
                                   "groups can be changed")

        self._in_transaction(f"reading group {group_id}", check)
        self._checked_groups.add(group_id)

    # contacts --------------------------------------------------------------------------------
    def create_contact(self, email: str, first_name: str | None = None,
                       last_name: str | None = None, *, tracking: str,
                       group_id: int | None = None) -> int:
        """A new Individual with a primary email (default location type); returns its id.

        Idempotent per plan: if an earlier run already created a live contact for this email
        with the same source note (it died before recording the id), that contact is returned.
        With `group_id` (the group it is created for), the group must still exist, checked in
        the same transaction: no contact is created for a group that is gone.
        """
        email = email.strip()
        if not email:
            raise CiviCRMError("cannot create a CiviCRM contact without an email address")
        source = source_note(tracking)
        first = (first_name or "").strip()[:64] or None
        last = (last_name or "").strip()[:64] or None
        display, sort = display_names(first, last, email)

        def create(cur) -> int:
            if group_id is not None:
                cur.execute("SELECT id FROM civicrm_group WHERE id = %s AND saved_search_id IS NULL"
                            " LOCK IN SHARE MODE", (group_id,))
                if cur.fetchone() is None:
                    raise CiviCRMError(f"CiviCRM group {group_id} does not exist (or is a smart "
                                       "group): no contact created for it")
            cur.execute(
                "SELECT c.id FROM civicrm_contact c JOIN civicrm_email e ON e.contact_id = c.id"
                " WHERE e.email = %s AND c.source = %s AND c.is_deleted = 0"
                " ORDER BY c.id LIMIT 1 FOR UPDATE", (email, source))
            row = cur.fetchone()
            if row:
                return row[0]
            cur.execute(
                "INSERT INTO civicrm_contact (contact_type, first_name, last_name, display_name,"
                " sort_name, hash, source, created_date, modified_date)"
                " VALUES ('Individual', %s, %s, %s, %s, %s, %s, NOW(), NOW())",
                (first, last, display, sort,
                 "".join(secrets.choice(_HASH_ALPHABET) for _ in range(15)), source))
            contact_id = cur.lastrowid
            cur.execute(
                "INSERT INTO civicrm_email (contact_id, location_type_id, email, is_primary)"
                " VALUES (%s, %s, %s, 1)", (contact_id, self._default_location_type(cur), email))
            return contact_id

        return self._in_transaction("creating a contact", create)

    def _default_location_type(self, cur) -> int | None:
        cur.execute("SELECT id FROM civicrm_location_type"
                    " ORDER BY is_default DESC, is_active DESC, id LIMIT 1")
        row = cur.fetchone()
        return row[0] if row else None

    def put_on_hold(self, email: str, contact_id: int | None = None) -> int:
        """Put email rows with this address on hold (on_hold=1, hold_date=now), as the sync
        extension's webhook does for a cleaned member — only when `[civicrm]
        on_hold_when_cleaned` is on. With `contact_id`, that contact's rows whose address is
        this one once normalised (case, whitespace at either end), as the webhook does; without,
        every row holding exactly this address. Returns how many rows changed (0 when off or
        already held)."""
        if not self.settings.on_hold_when_cleaned:
            return 0
        # hold_date is DATETIME: CiviCRM stores the site's local time there.
        now = local_now(self.settings)

        def hold(cur) -> int:
            if contact_id is None:
                return cur.execute(
                    "UPDATE civicrm_email SET on_hold = 1, hold_date = %s"
                    " WHERE email = %s AND on_hold = 0", (now, strip_email(email)))
            cur.execute("SELECT id, email FROM civicrm_email WHERE contact_id = %s"
                        " AND on_hold = 0 FOR UPDATE", (int(contact_id),))
            ids = [i for i, e in cur.fetchall() if e and normalize_email(e) ==
                   normalize_email(email)]
            if not ids:
                return 0
            return cur.execute("UPDATE civicrm_email SET on_hold = 1, hold_date = %s"
                               " WHERE id IN %s AND on_hold = 0", (now, ids))

        return self._in_transaction("putting an email on hold", hold)

    # plumbing --------------------------------------------------------------------------------
    def _server_now(self, cur):
        cur.execute("SELECT UTC_TIMESTAMP()")
        return cur.fetchone()[0].replace(tzinfo=UTC)

    def _in_transaction(self, what: str, work):
        try:
            self.conn.begin()
            with self.conn.cursor() as cur:
                result = work(cur)
            self.conn.commit()
            return result
        except pymysql.err.MySQLError as exc:
            self._rollback()
            raise CiviCRMError(
                f"CiviCRM write failed while {what}: {describe_error(exc, self.user)}; this batch "
                "was rolled back (earlier batches are committed; rerunning is safe)") from None
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        with contextlib.suppress(pymysql.err.MySQLError):
            self.conn.rollback()
