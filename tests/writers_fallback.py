"""Test-only stand-ins for the writers of issues 4 and 5, with exactly their agreed interfaces.

Issue 6 was built while those writers were still on other branches. Importing this module
installs the stand-ins ONLY where the real module is missing (`civimc_audit.mailchimp.writer`,
`civimc_audit.civicrm.writer`, `civimc_audit.civicrm.reader.changed_since`); once the real
writers are merged, this does nothing and the tests run against them.
"""

from __future__ import annotations

import importlib
import sys
import types
from dataclasses import dataclass
from datetime import UTC, datetime

INSTALLED: list[str] = []


def _missing(module: str) -> bool:
    try:
        importlib.import_module(module)
        return False
    except ModuleNotFoundError:
        return True


@dataclass(frozen=True)
class MemberResult:
    email_address: str
    ok: bool
    status: str | None
    title: str | None
    detail: str | None


class MailchimpWriter:
    def __init__(self, client, list_id: str):
        self.client, self.list_id = client, list_id

    def batch_update(self, members: list[dict], *, update_existing: bool = True):
        out = []
        for start in range(0, len(members), 500):
            chunk = members[start:start + 500]
            body = self.client.request("POST", f"/lists/{self.list_id}",
                                       json={"members": chunk, "update_existing": update_existing})
            done = {m["email_address"].lower(): m for m in
                    body.get("new_members", []) + body.get("updated_members", [])}
            errors = {e["email_address"].lower(): e for e in body.get("errors", [])}
            for m in chunk:
                key = m["email_address"].strip().lower()
                if key in done:
                    out.append(MemberResult(m["email_address"], True, done[key]["status"], None,
                                            None))
                else:
                    err = errors.get(key, {"error": "no result"})
                    text = err.get("error", "")
                    title = ("Member In Compliance State" if "compliance state" in text
                             else "Invalid Resource")
                    out.append(MemberResult(m["email_address"], False, None, title, text))
        return out

    def changed_since(self, since_utc: datetime) -> dict[str, datetime]:
        out, offset = {}, 0
        since = since_utc.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")
        while True:
            page = self.client.get(f"/lists/{self.list_id}/members", count=1000, offset=offset,
                                   since_last_changed=since,
                                   fields="total_items,members.id,members.last_changed")
            for m in page["members"]:
                out[m["id"]] = datetime.fromisoformat(m["last_changed"])
            offset += 1000
            if offset >= page["total_items"] or not page["members"]:
                return out


class CiviCRMWriter:
    def __init__(self, settings, *, batch_size: int = 200):
        from civimc_audit.civicrm.db import connect

        self.conn = connect(settings, write=True)
        self.batch_size = batch_size

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.conn.close()

    def _status(self, cur, group_id, cid):
        cur.execute("SELECT status FROM civicrm_group_contact WHERE group_id=%s AND contact_id=%s",
                    (group_id, cid))
        row = cur.fetchone()
        return row[0] if row else None

    def _history(self, cur, group_id, cid, status, tracking):
        cur.execute("INSERT INTO civicrm_subscription_history (contact_id, group_id, `date`,"
                    " method, status, tracking) VALUES (%s,%s,UTC_TIMESTAMP(),'API',%s,%s)",
                    (cid, group_id, status, tracking))

    def add_to_group(self, group_id, contact_ids, tracking):
        out = {}
        with self.conn.cursor() as cur:
            for cid in contact_ids:
                if self._status(cur, group_id, cid) == "Added":
                    out[cid] = "already"
                    continue
                cur.execute("REPLACE INTO civicrm_group_contact (group_id, contact_id, status)"
                            " VALUES (%s,%s,'Added')", (group_id, cid))
                self._history(cur, group_id, cid, "Added", tracking)
                out[cid] = "done"
        self.conn.commit()
        return out

    def remove_from_group(self, group_id, contact_ids, tracking):
        out = {}
        with self.conn.cursor() as cur:
            for cid in contact_ids:
                if self._status(cur, group_id, cid) != "Added":
                    out[cid] = "already"
                    continue
                self._history(cur, group_id, cid, "Removed", tracking)
                cur.execute("UPDATE civicrm_group_contact SET status='Removed' WHERE group_id=%s"
                            " AND contact_id=%s", (group_id, cid))
                out[cid] = "done"
        self.conn.commit()
        return out

    def create_contact(self, email, first_name=None, last_name=None, *, tracking):
        display = " ".join(p for p in (first_name, last_name) if p) or email
        with self.conn.cursor() as cur:
            cur.execute("INSERT INTO civicrm_contact (contact_type, first_name, last_name,"
                        " display_name, sort_name, source, created_date) VALUES"
                        " ('Individual',%s,%s,%s,%s,%s,NOW())",
                        (first_name, last_name, display, display, tracking))
            cid = cur.lastrowid
            cur.execute("INSERT INTO civicrm_email (contact_id, location_type_id, email,"
                        " is_primary) VALUES (%s,1,%s,1)", (cid, email))
        self.conn.commit()
        return cid


def changed_since(settings, group_id, contact_ids, since_utc):
    from civimc_audit.civicrm.db import connect

    if not contact_ids:
        return set()
    conn = connect(settings)
    try:
        with conn.cursor() as cur:
            marks = ", ".join(["%s"] * len(contact_ids))
            cur.execute(f"SELECT DISTINCT contact_id FROM civicrm_subscription_history WHERE"
                        f" group_id=%s AND `date` > %s AND contact_id IN ({marks})",
                        (group_id, since_utc.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                         *contact_ids))
            return {int(r[0]) for r in cur.fetchall()}
    finally:
        conn.close()


def install() -> list[str]:
    if _missing("civimc_audit.mailchimp.writer"):
        mod = types.ModuleType("civimc_audit.mailchimp.writer")
        mod.MailchimpWriter, mod.MemberResult = MailchimpWriter, MemberResult
        sys.modules[mod.__name__] = mod
        INSTALLED.append(mod.__name__)
    if _missing("civimc_audit.civicrm.writer"):
        mod = types.ModuleType("civimc_audit.civicrm.writer")
        mod.CiviCRMWriter = CiviCRMWriter
        sys.modules[mod.__name__] = mod
        INSTALLED.append(mod.__name__)
    reader = importlib.import_module("civimc_audit.civicrm.reader")
    if not hasattr(reader, "changed_since"):
        reader.changed_since = changed_since
        INSTALLED.append("civimc_audit.civicrm.reader.changed_since")
    return INSTALLED


install()

if __name__ == "__main__":  # run the CLI with the stand-ins: python tests/writers_fallback.py ARGS
    from civimc_audit.cli import main

    sys.exit(main(sys.argv[1:]))
