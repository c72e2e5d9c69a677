"""The current state of Mailchimp members, read by id (apply settling items an interrupted run
left as `sending`: was the change made? and, before each batch, is each member the plan was
made from still there?), and whether the audience is there."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from civimc_audit.errors import MailchimpError
from civimc_audit.mailchimp.client import MailchimpClient


def member_statuses(client: MailchimpClient, list_id: str, member_ids: list[str]
                    ) -> dict[str, str | None]:
    """member id -> current status at Mailchimp (None when the member does not exist), read
    `max_connections` at a time."""

    def one(mid: str) -> str | None:
        try:
            return client.get(f"/lists/{list_id}/members/{mid}", fields="status").get("status")
        except MailchimpError as exc:
            if exc.status != 404:
                raise
            return None

    ids = list(dict.fromkeys(member_ids))
    if len(ids) <= 1:
        return {mid: one(mid) for mid in ids}
    with ThreadPoolExecutor(client.max_connections, thread_name_prefix="mailchimp-member") as pool:
        return dict(zip(ids, pool.map(one, ids), strict=True))


def audience_exists(client: MailchimpClient, list_id: str) -> bool:
    """Whether the audience still exists (apply checks before each batch it sends)."""
    try:
        client.get(f"/lists/{list_id}", fields="id")
    except MailchimpError as exc:
        if exc.status != 404:
            raise
        return False
    return True


def member_interests(client: MailchimpClient, list_id: str, member_ids: list[str]
                     ) -> dict[str, tuple[str | None, dict[str, bool]]]:
    """member id -> (current status, interest id -> whether the member is in it) at Mailchimp
    ((None, {}) when the member does not exist), read `max_connections` at a time."""

    def one(mid: str) -> tuple[str | None, dict[str, bool]]:
        try:
            m = client.get(f"/lists/{list_id}/members/{mid}", fields="status,interests")
        except MailchimpError as exc:
            if exc.status != 404:
                raise
            return None, {}
        return m.get("status"), {str(k): bool(v) for k, v in (m.get("interests") or {}).items()}

    ids = list(dict.fromkeys(member_ids))
    if len(ids) <= 1:
        return {mid: one(mid) for mid in ids}
    with ThreadPoolExecutor(client.max_connections, thread_name_prefix="mailchimp-member") as pool:
        return dict(zip(ids, pool.map(one, ids), strict=True))
