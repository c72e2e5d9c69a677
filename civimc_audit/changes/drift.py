"""Who changed at either side since a plan's snapshots (the check before anything is sent).

A person is drift when, after the snapshot, Mailchimp changed the member (any status, archived
included, or its address — which gives it a new id), CiviCRM wrote group history for the
contact other than this plan's own, or the contact now differs from the snapshot in what
decides whether it may be synced: trashed, do_not_email / is_opt_out / is_deceased, its email
rows (address, on hold) or its group status (none of these write history). Apply skips them as
`stale`; a false `stale` is the safe way to be wrong, so the time cut-off is early rather than
late.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from civimc_audit.civicrm.live import CONSENT_FIELDS, LiveCiviCRM, snapshot_contact_states
from civimc_audit.common.times import parse_iso_utc
from civimc_audit.store import Snapshot, Store

# Server clocks (Mailchimp's data centres, the database) and the time an API reports can differ
# by a little; changes this long before the snapshot started count as after it.
MARGIN = timedelta(seconds=60)


def _utc(value) -> datetime | None:
    if not value:
        return None
    when = parse_iso_utc(value) if isinstance(value, str) else value
    return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)


def cutoff(snapshot: Snapshot) -> datetime:
    """The time after which a change counts as drift (UTC): the snapshot's start by the
    server's own clock (stored in its meta) or by ours, whichever is earlier, less MARGIN."""
    local = snapshot.started_at.replace(tzinfo=UTC)
    server = _utc(snapshot.meta.get("server_time_utc") or snapshot.meta.get("server_started_at"))
    return min(t for t in (local, server) if t is not None) - MARGIN


def civicrm_drift(civicrm: LiveCiviCRM, store: Store, snapshot_id: int, group_id: int,
                  contact_ids, since: datetime, own_tracking: str) -> dict[int, str]:
    """Contact -> why it changed in CiviCRM since the snapshot, for the contacts among
    `contact_ids` that did (history rows written by `own_tracking` do not count); `civicrm`
    reads the live database."""
    ids = sorted({int(c) for c in contact_ids})
    if not ids:
        return {}
    notes = civicrm.history_since(group_id, ids, since)
    then = snapshot_contact_states(store, snapshot_id, group_id, ids)
    now = civicrm.contact_states(group_id, ids)
    why: dict[int, list[str]] = {}
    for cid in ids:
        reasons = why.setdefault(cid, [])
        if notes.get(cid, set()) - {own_tracking}:
            reasons.append("new CiviCRM group history since the snapshot")
        before, after = then.get(cid), now.get(cid)
        if after is None:
            reasons.append("contact no longer exists in CiviCRM")
            continue
        if before is None:
            reasons.append("contact not in the snapshot")
            continue
        changed = [name for name, a, b in zip(CONSENT_FIELDS, before.flags, after.flags,
                                              strict=True) if a != b]
        if before.emails != after.emails:
            changed.append("email addresses or holds")
        # Rows this plan wrote aside, the contact's history rows must be the snapshot's (a merge
        # moves rows here with their old dates; a row inserted back-dated is new too).
        if ({hid for hid, _ in before.history}
                != {hid for hid, note in after.history if note != own_tracking}):
            changed.append("group history")
        # This plan's own group writes change the status; its history rows say so.
        if before.group_status != after.group_status and own_tracking not in notes.get(cid, ()):
            changed.append("group status")
        if changed:
            reasons.append(f"{', '.join(changed)} changed in CiviCRM since the snapshot")
    return {cid: "; ".join(r) for cid, r in why.items() if r}


def moved_members(store: Store, snapshot_id: int, changed: dict[str, dict], member_ids
                  ) -> dict[str, str]:
    """Snapshot member id -> its new address, for the members among `member_ids` whose address
    changed at Mailchimp since the snapshot (so their id did too): found by the Mailchimp
    contact_id, which an address change keeps. `changed` is MailchimpWriter.changed_members."""
    by_contact = {m["contact_id"]: m["email_address"] for mid, m in changed.items()
                  if m.get("contact_id")}
    ids = sorted(set(member_ids))
    if not by_contact or not ids:
        return {}
    rows = store.con.execute(
        "SELECT id, contact_id FROM mailchimp_member WHERE snapshot_id = ?"
        " AND id IN (SELECT unnest(?)) AND contact_id IS NOT NULL",
        [snapshot_id, ids]).fetchall()
    return {mid: by_contact[cid] for mid, cid in rows
            if cid in by_contact and mid not in changed}
