"""An audience's interest categories and interests ("groups" in Mailchimp's app).

Each audience holds a catalogue: categories (id, title, display type, order), each with its
interests (id of 10 hex digits, name, order). The API serves them at
`GET /lists/{id}/interest-categories` and `…/{category_id}/interests`; members carry
`interests` (interest id → true/false) that writes may set.

How members' entries are modelled (our reading of the real API, kept deliberately simple):
a member created through the API gets an entry for every interest the audience has at that
moment (false unless the write says true); an interest created later has no entry on the
members that already existed until a write gives them one, which is how "the member has no
entry for the interest" (the sync's skip case, rule I1) arises. A write naming an interest the
audience does not have is refused with 400 "Invalid Resource", as Mailchimp does.
"""

from __future__ import annotations

import hashlib

from civimc_sandbox.emulator import problems as P

CATEGORY_TYPES = ("checkboxes", "dropdown", "radio", "hidden")


def _hex_id(seed: str) -> str:
    return hashlib.md5(seed.encode()).hexdigest()[:10]


class Catalogue:
    """The interest categories of one audience, in display order."""

    def __init__(self, list_id: str):
        self.list_id = list_id
        self.categories: list[dict] = []

    def add_category(self, title: str, interests, *, category_id: str | None = None,
                     type: str = "checkboxes") -> dict:
        """Add a category with `interests` (names, or (id, name) pairs); returns it as
        {"id", "title", "type", "display_order", "interests": [{"id", "name", ...}]}."""
        if type not in CATEGORY_TYPES:
            raise ValueError(f"category type must be one of {CATEGORY_TYPES}")
        cid = category_id or _hex_id(f"category:{self.list_id}:{len(self.categories)}:{title}")
        if any(c["id"] == cid for c in self.categories):
            raise ValueError(f"interest category {cid} already exists")
        cat = {"id": cid, "title": title, "type": type,
               "display_order": len(self.categories), "interests": []}
        self.categories.append(cat)
        for item in interests:
            iid, name = item if isinstance(item, tuple) else (None, item)
            self.add_interest(cid, name, interest_id=iid)
        return cat

    def add_interest(self, category_id: str, name: str, *,
                     interest_id: str | None = None) -> str:
        cat = self.category(category_id)
        if cat is None:
            raise ValueError(f"no interest category {category_id}")
        iid = interest_id or _hex_id(f"interest:{self.list_id}:{category_id}:{name}")
        if iid in self.ids():
            raise ValueError(f"interest {iid} already exists")
        cat["interests"].append({"id": iid, "name": name,
                                 "display_order": len(cat["interests"])})
        return iid

    def category(self, category_id: str) -> dict | None:
        return next((c for c in self.categories if c["id"] == category_id), None)

    def ids(self) -> list[str]:
        return [i["id"] for c in self.categories for i in c["interests"]]

    def defaults(self) -> dict[str, bool]:
        """A new member's entries: every interest of the audience, false."""
        return dict.fromkeys(self.ids(), False)

    def check(self, body) -> None:
        """Refuse a write that names an interest the audience does not have."""
        if not isinstance(body, dict) or not isinstance(body.get("interests"), dict):
            return
        known = set(self.ids())
        for iid in body["interests"]:
            if iid not in known:
                raise P.invalid_resource([{"field": "interests",
                                           "message": f"Invalid interest ID: '{iid}'."}],
                                         f"Invalid interest ID: '{iid}'.")

    def to_doc(self) -> list[dict]:
        return [{**c, "interests": [dict(i) for i in c["interests"]]} for c in self.categories]

    def load_doc(self, doc: list[dict]) -> None:
        self.categories = [{**c, "interests": [dict(i) for i in c["interests"]]} for c in doc]
