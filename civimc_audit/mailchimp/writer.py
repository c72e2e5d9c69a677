"""Writes to one Mailchimp audience, reporting the outcome for every member.

Used by `apply`. Bulk status changes go through the batch subscribe endpoint (`POST /lists/{id}`,
at most 500 members a call), which answers HTTP 200 even when members fail and lists each failure
in `errors[]`; every one of those is mapped back to the member it belongs to. Single upserts use
PUT with `status_if_new`, email changes use PATCH.

Mailchimp refuses to subscribe someone who unsubscribed, bounced or was reviewed ("Member In
Compliance State"). That is reported as such; only when the caller asks (`pending_on_compliance`)
is the member sent again as `pending`, which emails them a confirmation request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from civimc_audit.common.emails import member_hash
from civimc_audit.common.times import iso_utc, parse_iso_utc
from civimc_audit.config import redact
from civimc_audit.errors import MailchimpError
from civimc_audit.mailchimp.client import MailchimpClient

BATCH_MAX = 500
MEMBER_EXISTS = "Member Exists"
COMPLIANCE = "Member In Compliance State"
FORGOTTEN = "Forgotten Email Not Subscribed"
INVALID = "Invalid Resource"
NOT_FOUND = "Resource Not Found"
REQUEST_FAILED = "Request Failed"


@dataclass
class MemberResult:
    """What happened to one member.

    `ok` — Mailchimp accepted the change; `status` is the member's status afterwards.
    `title`/`detail` — Mailchimp's error title (the stable discriminator: "Member In Compliance
    State", "Forgotten Email Not Subscribed", "Invalid Resource", "Member Exists", …) and text.
    `final` — a failure that sending again cannot fix; `final=False` failures (the request itself
    failed after all retries) may be retried later.
    `retried_as_pending` — refused as in compliance state, then sent again as `pending` (ok, with
    the compliance title kept so the caller can say a confirmation email went out).
    """

    email_address: str
    ok: bool
    status: str | None = None
    title: str | None = None
    detail: str | None = None
    final: bool = False
    retried_as_pending: bool = False
    member_id: str | None = None
    errors: list | None = field(default=None, repr=False)


def title_for_batch_error(item: dict) -> str:
    """The problem title the single-member endpoints would give for a batch `errors[]` item
    (the batch endpoint reports only a message and ERROR_CONTACT_EXISTS/ERROR_GENERIC)."""
    if item.get("error_code") == "ERROR_CONTACT_EXISTS":
        return MEMBER_EXISTS
    text = (item.get("error") or "").lower()
    if "compliance state" in text:
        return COMPLIANCE
    if "permanently deleted" in text or "cannot be re-imported" in text:
        return FORGOTTEN
    return INVALID


def _failed(email: str, exc: MailchimpError) -> MemberResult:
    # A 4xx answer is Mailchimp's verdict on this member; no answer or a 429/5xx after all
    # retries says nothing about the member, so it may be tried again later.
    transient = exc.status is None or exc.status == 429 or exc.status >= 500
    return MemberResult(email, False, None, exc.title or REQUEST_FAILED, exc.detail or str(exc),
                        final=not transient, member_id=member_hash(email), errors=exc.errors)


def _raise_if_auth(exc: MailchimpError) -> None:
    # A refused key fails every member alike: stop the whole run instead of reporting each.
    if exc.status in (401, 403):
        raise exc


def _as_utc_param(when: datetime) -> str:
    return iso_utc(when, offset=True)


class MailchimpWriter:
    """Writes to audience `list_id` through `client` (which does the retrying)."""

    def __init__(self, client: MailchimpClient, list_id: str):
        self.client = client
        self.list_id = list_id

    # --- batch subscribe / unsubscribe ----------------------------------------------------
    def batch_update(self, members: list[dict], *, update_existing: bool = True,
                     pending_on_compliance: bool = False) -> list[MemberResult]:
        """Send `members` ({"email_address", "status", "merge_fields"?}) in calls of ≤500.

        Returns one result per input member, in input order. A call that fails as a whole
        (after the client's retries) gives every member of that call a non-final failure; a
        refused API key raises.
        """
        results: list[MemberResult] = []
        for start in range(0, len(members), BATCH_MAX):
            results.extend(self._batch_call(members[start:start + BATCH_MAX], update_existing))
        if pending_on_compliance:
            self._retry_as_pending(members, results, update_existing)
        return results

    def _batch_call(self, chunk: list[dict], update_existing: bool) -> list[MemberResult]:
        body = {"members": [_member_body(m) for m in chunk], "update_existing": update_existing}
        try:
            resp = self.client.request("POST", f"/lists/{self.list_id}", json=body) or {}
        except MailchimpError as exc:
            _raise_if_auth(exc)
            return [_failed(m.get("email_address") or "", exc) for m in chunk]
        done: dict[str, dict] = {}
        for m in (resp.get("new_members") or []) + (resp.get("updated_members") or []):
            done[m.get("id") or member_hash(m.get("email_address") or "")] = m
        errors: dict[str, dict] = {}
        for item in resp.get("errors") or []:
            errors.setdefault(member_hash(item.get("email_address") or ""), item)
        out = []
        for m in chunk:
            email = m.get("email_address") or ""
            h = member_hash(email)
            if h in errors:
                item = errors[h]
                title = title_for_batch_error(item)
                out.append(MemberResult(email, False, None, title,
                                        redact(str(item.get("error") or "")) or None,
                                        final=True, member_id=h,
                                        errors=[{"field": item.get("field", ""),
                                                 "message": item.get("field_message", "")}]
                                        if item.get("field") else None))
            elif h in done:
                out.append(MemberResult(email, True, done[h].get("status"), member_id=h))
            else:
                out.append(MemberResult(email, False, None, REQUEST_FAILED,
                                        "Mailchimp's answer did not mention this member",
                                        member_id=h))
        return out

    def _retry_as_pending(self, members, results, update_existing) -> None:
        again = [i for i, r in enumerate(results)
                 if r.title == COMPLIANCE and not r.ok and members[i].get("status") == "subscribed"]
        if not again:
            return
        retry = self.batch_update([{**members[i], "status": "pending"} for i in again],
                                  update_existing=update_existing)
        for i, r in zip(again, retry, strict=True):
            if r.ok:
                results[i] = MemberResult(r.email_address, True, r.status, COMPLIANCE,
                                          results[i].detail, retried_as_pending=True,
                                          member_id=r.member_id)
            else:
                results[i] = r

    # --- single members ------------------------------------------------------------------
    def upsert(self, email: str, *, status: str | None = None, status_if_new: str | None = None,
               merge_fields: dict | None = None,
               pending_on_compliance: bool = False) -> MemberResult:
        """PUT: create the member with `status_if_new`, or update an existing one (`status`)."""
        body: dict[str, object] = {"email_address": email}
        if status_if_new:
            body["status_if_new"] = status_if_new
        if status:
            body["status"] = status
        if merge_fields:
            body["merge_fields"] = merge_fields
        result = self._put(email, body)
        if pending_on_compliance and result.title == COMPLIANCE and not result.ok:
            retry = self._put(email, {**body, "status": "pending",
                                      **({"status_if_new": "pending"} if status_if_new else {})})
            if retry.ok:
                return MemberResult(email, True, retry.status, COMPLIANCE, result.detail,
                                    retried_as_pending=True, member_id=retry.member_id)
            return retry
        return result

    def _put(self, email: str, body: dict) -> MemberResult:
        try:
            m = self.client.request("PUT", f"/lists/{self.list_id}/members/{member_hash(email)}",
                                    json=body) or {}
        except MailchimpError as exc:
            _raise_if_auth(exc)
            return _failed(email, exc)
        return MemberResult(email, True, m.get("status"), member_id=m.get("id"))

    def change_email(self, old_email: str, new_email: str) -> MemberResult:
        """PATCH the member at `old_email` to `new_email` (keeps its history and status)."""
        path = f"/lists/{self.list_id}/members/{member_hash(old_email)}"
        try:
            m = self.client.request("PATCH", path, json={"email_address": new_email}) or {}
        except MailchimpError as exc:
            _raise_if_auth(exc)
            if exc.status == 404:
                # A retried PATCH whose first attempt went through finds the old address gone.
                done = self._get(new_email)
                if done is not None:
                    return MemberResult(new_email, True, done.get("status"),
                                        member_id=done.get("id"))
            return _failed(new_email, exc)
        return MemberResult(new_email, True, m.get("status"), member_id=m.get("id"))

    def set_interests(self, email: str, interests: dict[str, bool]) -> MemberResult:
        """PATCH the member at `email` with these interests only (its status and everything
        else stay as they are); a member that does not exist is a final failure."""
        path = f"/lists/{self.list_id}/members/{member_hash(email)}"
        try:
            m = self.client.request("PATCH", path, json={"interests": interests}) or {}
        except MailchimpError as exc:
            _raise_if_auth(exc)
            return _failed(email, exc)
        return MemberResult(email, True, m.get("status"), member_id=m.get("id"))

    def _get(self, email: str) -> dict | None:
        try:
            return self.client.get(f"/lists/{self.list_id}/members/{member_hash(email)}",
                                   fields="id,status,email_address")
        except MailchimpError as exc:
            if exc.status == 404:
                return None
            raise

    # --- drift check ---------------------------------------------------------------------
    def changed_since(self, since_utc: datetime) -> dict[str, datetime | None]:
        """Member id (md5) -> last_changed (naive UTC) for members changed after `since_utc`
        (naive means UTC), every status included, archived ones too."""
        return {mid: m["last_changed"] for mid, m in self.changed_members(since_utc).items()}

    def changed_members(self, since_utc: datetime) -> dict[str, dict]:
        """Member id -> {"last_changed" (naive UTC), "contact_id", "email_address"} for members
        changed after `since_utc`. contact_id stays when the address (and so the id) changes."""
        from civimc_audit.mailchimp.reader import read_changed

        # Archived members are asked for by status too: a listing may leave them out, and
        # whether it does is not known from a snapshot that held none (a false change is safe).
        rows = read_changed(self.client, self.list_id, _as_utc_param(since_utc),
                            fields=("id", "last_changed", "contact_id", "email_address"),
                            archived_separately=True)
        return {key: {"last_changed": _parse(m.get("last_changed")),
                      "contact_id": m.get("contact_id"),
                      "email_address": m.get("email_address")} for key, m in rows.items()}


def _member_body(m: dict) -> dict:
    return {k: v for k, v in m.items() if v is not None}


def _parse(value: str | None) -> datetime | None:
    """A member's last_changed (naive UTC), or None when Mailchimp sent none or not a time: the
    member still counts as changed (a false change is safe)."""
    try:
        return parse_iso_utc(value) if value else None
    except ValueError:
        return None
