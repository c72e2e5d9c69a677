"""The API's member write rules: add, upsert, update, archive, forget, batch subscribe.

These are the behaviours a sync client trips over in production, so they are
modelled on observed responses of the real API:

* POST of an existing member -> "Member Exists", except archived members,
  which are revived with the new status.
* PUT upserts: a new member needs ``email_address`` and ``status_if_new``;
  ``status`` applies to existing (and archived) members.
* unsubscribed/cleaned -> subscribed through the API -> "Member In Compliance
  State"; -> pending is accepted.  A member archived while unsubscribed keeps
  that compliance state (our choice; unverified).
* delete-permanent leaves a tombstone; any later add of the address ->
  "Forgotten Email Not Subscribed".
* DELETE archives; cleaned/pending/archived members give 405 with
  ``Allow: GET, PUT``.

All functions run under ``emu.lock`` and raise :class:`~.problems.ApiError`.
"""

from __future__ import annotations

from civimc_sandbox.emulator import problems as P
from civimc_sandbox.emulator.activity import note_status_change
from civimc_sandbox.emulator.records import (
    COMPLIANCE_STATUSES,
    PATCH_STATUSES,
    WRITABLE_STATUSES,
    Record,
    email_domain,
    member_hash,
    parse_ts,
    valid_email_syntax,
)

_JSON_TYPES = ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
               (list, "array"), (dict, "object"), (type(None), "NULL"))
BATCH_MAX = 500


def json_type(v) -> str:
    for t, name in _JSON_TYPES:
        if isinstance(v, t):
            return name
    return type(v).__name__


def _type_error(field: str, want: str, v) -> dict:
    return {"field": field, "message": f"Schema describes {want}, {json_type(v)} found instead"}


def validate_member_body(body, statuses: dict[str, tuple], *, allow_tags: bool = False) -> None:
    """Schema-level checks shared by POST/PUT/PATCH/batch items.

    ``statuses`` maps the status-like keys the endpoint accepts to their enums.
    """
    if not isinstance(body, dict):
        raise P.invalid_resource([_type_error("", "object", body)])
    errors = []
    for k, v in body.items():
        if k in statuses:
            if not isinstance(v, str) or v not in statuses[k]:
                errors.append({"field": k, "message": "Value must be one of: "
                               + ", ".join(statuses[k]) + f" ({v!r} given)"})
        elif k in ("email_address", "language", "ip_signup", "ip_opt"):
            if not isinstance(v, str):
                errors.append(_type_error(k, "string", v))
        elif k == "email_type":
            if v not in ("html", "text"):
                errors.append({"field": k, "message": "Value must be one of: html, text"})
        elif k in ("merge_fields", "interests", "location"):
            if not isinstance(v, dict):
                errors.append(_type_error(k, "object", v))
            elif k == "interests" and not all(isinstance(x, bool) for x in v.values()):
                errors.append({"field": k, "message": "Interest values must be booleans"})
            elif k == "location" and not all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                             for x in v.values()):
                errors.append({"field": k, "message": "Schema describes number"})
        elif k == "vip":
            if not isinstance(v, bool):
                errors.append(_type_error(k, "boolean", v))
        elif k in ("timestamp_signup", "timestamp_opt"):
            try:
                parse_ts(v) if isinstance(v, str) else _raise()
            except (ValueError, TypeError):
                errors.append({"field": k, "message": "Please provide a valid date-time (ISO 8601)"})
        elif k == "marketing_permissions":
            if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
                errors.append(_type_error(k, "array", v))
        elif k == "tags" and allow_tags and (
                not isinstance(v, list) or not all(isinstance(x, str) for x in v)):
            errors.append(_type_error(k, "array", v))
    if errors:
        raise P.invalid_resource(errors)


def _raise():
    raise TypeError


def check_new_email(emu, lst, email: str) -> None:
    """The checks Mailchimp makes before an address may join a list."""
    if not valid_email_syntax(email):
        raise P.bad_email()
    if email_domain(email) in emu.fake_domains:
        raise P.fake_email(email)
    if member_hash(email) in lst.tombstones:
        raise P.forgotten(email)


def check_status_change(rec: Record, new: str | None) -> None:
    if new != "subscribed":
        return
    effective = rec.prev_status if rec.status == "archived" else rec.status
    if effective in COMPLIANCE_STATUSES:
        raise P.compliance_state(rec.email)


def set_status(lst, rec: Record, new: str, now: int, explicit_opt: bool = False) -> None:
    old = rec.status
    if new == old:
        return
    lst.counts[old] -= 1
    lst.counts[new] += 1
    rec.status = new
    rec.prev_status = old if new == "archived" else None
    if new == "subscribed":
        if not explicit_opt:
            rec.ts_opt = now
        lst.last_sub = now
    elif new == "unsubscribed":
        rec.unsub_reason = "N/A (Unsubscribed by an admin)"
        lst.last_unsub = now
    note_status_change(rec, old, new, now)


def apply_fields(lst, rec: Record, body: dict, now: int) -> None:
    """Copy the writable non-status fields of ``body`` onto ``rec``."""
    if "merge_fields" in body:
        rec.mf = {**(rec.mf or {}), **body["merge_fields"]} or None
    if "interests" in body:
        rec.interests = {**(rec.interests or {}), **body["interests"]} or None
    if "location" in body:
        rec.location = {**(rec.location or {}), **body["location"]} or None
    for k in ("email_type", "language", "ip_signup", "ip_opt"):
        if k in body:
            setattr(rec, k, body[k])
    if "vip" in body:
        rec.vip = body["vip"]
    if "timestamp_signup" in body:
        rec.ts_signup = parse_ts(body["timestamp_signup"])
    if "timestamp_opt" in body:
        rec.ts_opt = parse_ts(body["timestamp_opt"])
    if "marketing_permissions" in body:
        rec.permissions = [dict(p) for p in body["marketing_permissions"]] or None
    if body.get("tags"):
        tags = dict(rec.tags or {})
        for t in body["tags"]:
            lst.tag_id(t)
            tags.setdefault(t, now)
        rec.tags = tags


def _create(emu, lst, email: str, status: str, body: dict, now: int) -> Record:
    rec = Record(email.strip(), member_hash(email), status, now, None, emu._next_seq())
    rec.interests = lst.catalogue.defaults() or None  # every interest the audience has
    apply_fields(lst, rec, body, now)
    if status == "subscribed":
        if "timestamp_opt" not in body:
            rec.ts_opt = now
        lst.last_sub = now
    elif status == "unsubscribed":
        rec.unsub_reason = "N/A (Unsubscribed by an admin)"
        lst.last_unsub = now
    note_status_change(rec, None, status, now)
    lst.insert(rec)
    lst.note_change(rec, None)
    return rec


def _update(lst, rec: Record, body: dict, status: str | None, now: int) -> None:
    before = rec.copy()
    apply_fields(lst, rec, body, now)
    if status:
        set_status(lst, rec, status, now, "timestamp_opt" in body)
    rec.lc = now
    lst.note_change(rec, before)


def _change_email(emu, lst, rec: Record, email: str) -> None:
    """Rename a member (PUT/PATCH with a different ``email_address``)."""
    email = email.strip()
    h = member_hash(email)
    if h == rec.id:
        rec.email = email
        return
    other = lst.index.get(h)
    if other is not None:
        raise P.member_exists(email)
    check_new_email(emu, lst, email)
    lst.rekey(rec, email)


# --- endpoints ---------------------------------------------------------------

def add_member(emu, lst, body) -> Record:
    """POST /lists/{id}/members"""
    validate_member_body(body, {"status": WRITABLE_STATUSES}, allow_tags=True)
    lst.catalogue.check(body)
    missing = [k for k in ("email_address", "status") if not body.get(k)]
    if missing:
        raise P.missing_fields(*missing)
    email = body["email_address"].strip()
    now = emu.now()
    rec = lst.index.get(member_hash(email))
    if rec is not None and rec.status != "archived":
        raise P.member_exists(email)
    check_new_email(emu, lst, email)
    if rec is None:
        return _create(emu, lst, email, body["status"], body, now)
    check_status_change(rec, body["status"])
    _update(lst, rec, body, body["status"], now)
    return rec


def upsert_member(emu, lst, key: str, body) -> Record:
    """PUT /lists/{id}/members/{subscriber_hash}"""
    validate_member_body(body, {"status": WRITABLE_STATUSES, "status_if_new": WRITABLE_STATUSES})
    lst.catalogue.check(body)
    now = emu.now()
    rec = lst.lookup(key)
    email = (body.get("email_address") or "").strip()
    if rec is None:
        if not email:
            raise P.missing_fields("email_address")
        k = key.strip()
        wanted = member_hash(k) if "@" in k else k.lower()
        if member_hash(email) != wanted:
            raise P.field_error("email_address", "The email address provided does not match "
                                                 "the subscriber hash in the URL.")
        if not body.get("status_if_new"):
            raise P.missing_fields("status_if_new")
        check_new_email(emu, lst, email)
        return _create(emu, lst, email, body["status_if_new"], body, now)
    status = body.get("status")
    if rec.status == "archived" and not status:
        status = body.get("status_if_new")
        if not status:
            raise P.missing_fields("status_if_new")
    check_status_change(rec, status)
    if email and email.lower() != rec.email.lower():
        _change_email(emu, lst, rec, email)
    elif email:
        rec.email = email
    _update(lst, rec, body, status, now)
    return rec


def update_member(emu, lst, key: str, body) -> Record:
    """PATCH /lists/{id}/members/{subscriber_hash}"""
    rec = lst.lookup(key)
    if rec is None:
        raise P.not_found()
    validate_member_body(body, {"status": PATCH_STATUSES})
    lst.catalogue.check(body)
    email = (body.get("email_address") or "").strip()
    check_status_change(rec, body.get("status"))
    if email and email.lower() != rec.email.lower():
        _change_email(emu, lst, rec, email)
    _update(lst, rec, body, body.get("status"), emu.now())
    return rec


def archive_member(emu, lst, key: str) -> None:
    """DELETE /lists/{id}/members/{subscriber_hash}"""
    rec = lst.lookup(key)
    if rec is None:
        raise P.not_found()
    if rec.status in ("cleaned", "pending", "archived"):
        raise P.cannot_archive()
    before = rec.copy()
    set_status(lst, rec, "archived", emu.now())
    rec.lc = emu.now()
    lst.note_change(rec, before)


def delete_permanent(emu, lst, key: str) -> None:
    """POST /lists/{id}/members/{subscriber_hash}/actions/delete-permanent"""
    rec = lst.lookup(key)
    if rec is None:
        raise P.not_found()
    before = rec.copy()
    lst.remove(rec)
    lst.tombstones.add(rec.id)
    lst.note_change(rec, before)


def update_tags(emu, lst, key: str, body) -> None:
    """POST /lists/{id}/members/{subscriber_hash}/tags"""
    rec = lst.lookup(key)
    if rec is None:
        raise P.not_found()
    if not isinstance(body, dict) or not isinstance(body.get("tags"), list):
        raise P.missing_fields("tags")
    errors = [{"field": "tags", "message": "Each tag needs a name and a status "
                                           "(active or inactive)"}
              for t in body["tags"] if not isinstance(t, dict) or not isinstance(t.get("name"), str)
              or t.get("status") not in ("active", "inactive")]
    if errors:
        raise P.invalid_resource(errors[:1])
    now = emu.now()
    before = rec.copy()
    tags = dict(rec.tags or {})
    for t in body["tags"]:
        if t["status"] == "active":
            lst.tag_id(t["name"])
            tags.setdefault(t["name"], now)
        else:
            tags.pop(t["name"], None)
    rec.tags = tags or None
    rec.lc = now
    lst.note_change(rec, before)


def batch_subscribe(emu, lst, body, skip_duplicates: bool = False):
    """POST /lists/{id}: returns ``(new_records, updated_records, error_items)``.

    Per-member failures become error items (the HTTP call still succeeds).
    Members are processed in order, so a repeated address is treated as
    already present unless ``skip_duplicate_check`` drops later copies.
    Reviving an archived member counts as a new member (our choice).
    """
    if not isinstance(body, dict):
        raise P.invalid_resource([_type_error("", "object", body)])
    members = body.get("members")
    if members is None:
        raise P.missing_fields("members")
    if not isinstance(members, list):
        raise P.invalid_resource([_type_error("members", "array", members)])
    if len(members) > BATCH_MAX:
        raise P.field_error("members", f"You may only submit up to {BATCH_MAX} members at a time "
                                       f"({len(members)} given).")
    update_existing = bool(body.get("update_existing"))
    now = emu.now()
    new, updated, errors, seen = [], [], [], set()
    for item in members:
        email = item.get("email_address") if isinstance(item, dict) else None
        email = email.strip() if isinstance(email, str) else ""
        try:
            validate_member_body(item, {"status": WRITABLE_STATUSES})
            lst.catalogue.check(item)
            if not email:
                raise P.missing_fields("email_address")
            h = member_hash(email)
            if h in seen and skip_duplicates:
                continue
            seen.add(h)
            rec = lst.index.get(h)
            status = item.get("status")
            if rec is not None and rec.status != "archived":
                if not update_existing:
                    errors.append(_error_item(email, f"{email} is already a list member, do you "
                                              "want to update? please provide update_existing:true "
                                              "in the request body", "ERROR_CONTACT_EXISTS"))
                    continue
                check_status_change(rec, status)
                _update(lst, rec, item, status, now)
                if rec not in updated:
                    updated.append(rec)
                continue
            check_new_email(emu, lst, email)
            if not status:
                raise P.missing_fields("status")
            if rec is None:
                rec = _create(emu, lst, email, status, item, now)
            else:
                check_status_change(rec, status)
                _update(lst, rec, item, status, now)
            new.append(rec)
        except P.ApiError as e:
            msg = e.errors[0]["message"] if e.errors else e.detail
            errors.append(_error_item(email, msg, "ERROR_GENERIC",
                                      e.errors[0].get("field", "") if e.errors else ""))
    return new, updated, errors


def _error_item(email: str, error: str, code: str, field: str = "") -> dict:
    return {"email_address": email, "error": error, "error_code": code,
            "field": field, "field_message": error if field else ""}
