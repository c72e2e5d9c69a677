"""The audience's interest catalogue: its interest categories and their interests.

Read for `check` (each mapping named in words) and for every Mailchimp snapshot (the report and
the outcome rows name interests; a mapped interest missing from the catalogue gets rule I1).
It costs one request for the categories and one per category: audiences have a handful.
"""

from __future__ import annotations

from civimc_audit.mailchimp.client import MailchimpClient

PAGE = 1000  # Mailchimp allows at most 60 categories and a few hundred interests: one page


def read_catalogue(client: MailchimpClient, list_id: str) -> list[dict]:
    """One dict per interest: category_id, category_title, interest_id, interest_name, in
    the audience's display order."""
    out: list[dict] = []
    for cat in _all(client, f"/lists/{list_id}/interest-categories", "categories",
                    "categories.id,categories.title"):
        for item in _all(client, f"/lists/{list_id}/interest-categories/{cat['id']}/interests",
                         "interests", "interests.id,interests.name"):
            out.append({"category_id": cat["id"], "category_title": cat.get("title"),
                        "interest_id": item["id"], "interest_name": item.get("name")})
    return out


def _all(client: MailchimpClient, path: str, key: str, fields: str) -> list[dict]:
    rows: list[dict] = []
    while True:
        page = client.get(path, count=PAGE, offset=len(rows), fields=f"total_items,{fields}")
        rows.extend(page.get(key) or [])
        if not page.get(key) or len(rows) >= int(page.get("total_items") or 0):
            return rows
