"""The current state of Mailchimp members, read one by one (apply settling items an
interrupted run left as `sending`: was the change made?), and whether the audience is there."""

from __future__ import annotations

from civimc_audit.errors import MailchimpError
from civimc_audit.mailchimp.client import MailchimpClient


def member_statuses(client: MailchimpClient, list_id: str, member_ids: list[str]
                    ) -> dict[str, str | None]:
    """member id -> current status at Mailchimp (None when the member does not exist)."""
    out: dict[str, str | None] = {}
    for mid in member_ids:
        try:
            out[mid] = client.get(f"/lists/{list_id}/members/{mid}", fields="status")["status"]
        except MailchimpError as exc:
            if exc.status != 404:
                raise
            out[mid] = None
    return out


def audience_exists(client: MailchimpClient, list_id: str) -> bool:
    """Whether the audience still exists (apply checks before each batch it sends)."""
    try:
        client.get(f"/lists/{list_id}", fields="id")
    except MailchimpError as exc:
        if exc.status != 404:
            raise
        return False
    return True
