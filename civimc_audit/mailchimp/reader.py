"""Snapshot of one Mailchimp audience (every member, every status) into the audit store."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
from tqdm.auto import tqdm

from ..config import MailchimpSettings
from ..errors import MailchimpError
from ..store import Snapshot, Store
from .client import MailchimpClient

PAGE_SIZE = 1000
MEMBER_FIELDS = ("id", "email_address", "status", "last_changed", "merge_fields",
                 "unique_email_id", "contact_id", "timestamp_opt")


def parse_time(value: str | None) -> datetime | None:
    """Mailchimp's ISO 8601 timestamp as naive UTC; "" (unset) becomes None."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC).replace(
        tzinfo=None)


def member_rows(members: list[dict]) -> list[dict]:
    rows = []
    for m in members:
        merge = m.get("merge_fields") or {}
        rows.append({
            "id": m["id"], "email_address": m.get("email_address"), "status": m.get("status"),
            "last_changed": parse_time(m.get("last_changed")),
            "fname": merge.get("FNAME") or None, "lname": merge.get("LNAME") or None,
            "merge_fields": json.dumps(merge) if merge else None,
            "unique_email_id": m.get("unique_email_id"), "contact_id": m.get("contact_id"),
            "timestamp_opt": parse_time(m.get("timestamp_opt")),
        })
    return rows


def snapshot_mailchimp(settings: MailchimpSettings, store: Store, progress: bool = False,
                       client: MailchimpClient | None = None) -> Snapshot:
    """Page through the whole audience into a new snapshot."""
    client = client or MailchimpClient(settings)
    info = client.get_list(settings.list_id)
    snap_id = store.begin_snapshot("mailchimp", {"list_id": settings.list_id,
                                                 "list_name": info.get("name")})
    try:
        fields = ",".join(["total_items"] + [f"members.{f}" for f in MEMBER_FIELDS])
        rows: dict[str, dict] = {}
        offset, total = 0, None
        bar = tqdm(desc="Mailchimp members", unit=" members", disable=not progress)
        while total is None or offset < total:
            page = client.get(f"/lists/{settings.list_id}/members", count=PAGE_SIZE,
                              offset=offset, fields=fields)
            total = page["total_items"]
            bar.total = total
            for row in member_rows(page.get("members", [])):
                rows[row["id"]] = row
            bar.update(len(page.get("members", [])))
            if not page.get("members"):
                break
            offset += PAGE_SIZE
        bar.close()
        complete = len(rows) >= (total or 0)
        frame = pd.DataFrame(list(rows.values()), columns=[
            "id", "email_address", "status", "last_changed", "fname", "lname", "merge_fields",
            "unique_email_id", "contact_id", "timestamp_opt"])
        lst = pd.DataFrame([{"id": settings.list_id, "name": info.get("name"),
                             "member_count": (info.get("stats") or {}).get("member_count"),
                             "total_items": total}])
        with store.transaction() as con:
            con.register("_m", frame)
            con.execute(f"INSERT INTO mailchimp_member SELECT {snap_id}, * FROM _m")
            con.unregister("_m")
            con.register("_l", lst)
            con.execute(f"INSERT INTO mailchimp_list SELECT {snap_id}, * FROM _l")
            con.unregister("_l")
        return store.finish_snapshot(
            snap_id, complete=complete,
            message=None if complete else f"read {len(rows)} of {total} members")
    except MailchimpError as exc:
        store.fail_snapshot(snap_id, str(exc))
        raise
    finally:
        client.close()
