"""JSON shapes of API resources, built from stored records, and partial responses.

Members are rendered on demand (never stored as JSON) and, when the client
asks for ``fields=members.x,...``, only the requested keys are built: a
snapshot that pages a million members with a narrow field list then costs a
few dict entries per member instead of the full object with ten ``_links``.
"""

from __future__ import annotations

import functools
import hashlib

from civimc_sandbox.emulator.records import Record, iso

SCHEMA_ROOT = "https://us1.api.mailchimp.com/schema/3.0/"
_MEMBER_SCHEMA = SCHEMA_ROOT + "Definitions/Lists/Members/Response.json"

_EMPTY_LOCATION = {"latitude": 0, "longitude": 0, "gmtoff": 0, "dstoff": 0,
                   "country_code": "", "timezone": "", "region": ""}


class ListContext:
    """What member rendering needs to know about the member's list."""

    __slots__ = ("list_id", "base", "mf_defaults", "tag_ids", "contact_mask")

    def __init__(self, list_id: str, base: str, mf_defaults: dict, tag_ids: dict):
        self.list_id = list_id
        self.base = base
        self.mf_defaults = mf_defaults
        self.tag_ids = tag_ids
        self.contact_mask = int(hashlib.md5(("contact:" + list_id).encode()).hexdigest(), 16)


def contact_id(origin: str, mask: int) -> str:
    # Reversible (XOR) so a contact_id in a URL maps back to the member in O(1).
    return format(int(origin, 16) ^ mask, "032x")


def unique_email_id(email: str) -> str:
    return hashlib.md5(("uid:" + email.lower()).encode()).hexdigest()[:10]


def link(rel: str, href: str, method: str, target: str | None = None,
         schema: str | None = None) -> dict:
    d = {"rel": rel, "href": href, "method": method}
    if target:
        d["targetSchema"] = SCHEMA_ROOT + target
    if schema:
        d["schema"] = SCHEMA_ROOT + schema
    return d


def member_links(ctx: ListContext, h: str) -> list[dict]:
    coll = f"{ctx.base}/lists/{ctx.list_id}/members"
    me = f"{coll}/{h}"
    return [
        {"rel": "self", "href": me, "method": "GET", "targetSchema": _MEMBER_SCHEMA},
        link("parent", coll, "GET", "Definitions/Lists/Members/CollectionResponse.json",
             "CollectionLinks/Lists/Members.json"),
        {"rel": "update", "href": me, "method": "PATCH", "targetSchema": _MEMBER_SCHEMA,
         "schema": SCHEMA_ROOT + "Definitions/Lists/Members/PATCH.json"},
        {"rel": "upsert", "href": me, "method": "PUT", "targetSchema": _MEMBER_SCHEMA,
         "schema": SCHEMA_ROOT + "Definitions/Lists/Members/PUT.json"},
        {"rel": "delete", "href": me, "method": "DELETE"},
        link("activity", me + "/activity", "GET", "Definitions/Lists/Members/Activity/Response.json"),
        link("goals", me + "/goals", "GET", "Definitions/Lists/Members/Goals/Response.json"),
        link("notes", me + "/notes", "GET",
             "Definitions/Lists/Members/Notes/CollectionResponse.json"),
        link("events", me + "/events", "POST", "Definitions/Lists/Members/Events/POST.json"),
        {"rel": "delete_permanent", "href": me + "/actions/delete-permanent", "method": "POST"},
    ]


def _merge_fields(r: Record, c: ListContext) -> dict:
    return {**c.mf_defaults, **r.mf} if r.mf else dict(c.mf_defaults)


def _full_name(r: Record, c: ListContext) -> str:
    mf = r.mf or {}
    parts = [mf.get("FNAME"), mf.get("LNAME")]
    return " ".join(str(p) for p in parts if p not in (None, "")).strip()


def _tags(r: Record, c: ListContext) -> list:
    if not r.tags:
        return []
    return [{"id": c.tag_ids.get(t, 0), "name": t} for t in r.tags]


def _location(r: Record, c: ListContext) -> dict:
    return {**_EMPTY_LOCATION, **r.location} if r.location else dict(_EMPTY_LOCATION)


# One builder per member key, in the real API's key order.  ``None`` results
# are dropped (used for keys that the real API only sends when they apply).
MEMBER_BUILDERS = {
    "id": lambda r, c: r.id,
    "email_address": lambda r, c: r.email,
    "unique_email_id": lambda r, c: unique_email_id(r.email),
    "contact_id": lambda r, c: contact_id(r.origin, c.contact_mask),
    "full_name": _full_name,
    "web_id": lambda r, c: 100_000_000 + r.seq,
    "email_type": lambda r, c: r.email_type,
    "status": lambda r, c: r.status,
    "unsubscribe_reason": lambda r, c: r.unsub_reason if r.status == "unsubscribed" else None,
    "consents_to_one_to_one_messaging": lambda r, c: True,
    "merge_fields": _merge_fields,
    "interests": lambda r, c: dict(r.interests) if r.interests else {},
    "stats": lambda r, c: {"avg_open_rate": 0, "avg_click_rate": 0},
    "ip_signup": lambda r, c: r.ip_signup,
    "timestamp_signup": lambda r, c: iso(r.ts_signup),
    "ip_opt": lambda r, c: r.ip_opt,
    "timestamp_opt": lambda r, c: iso(r.ts_opt),
    "member_rating": lambda r, c: 2,
    "last_changed": lambda r, c: iso(r.lc),
    "language": lambda r, c: r.language,
    "vip": lambda r, c: r.vip,
    "email_client": lambda r, c: "",
    "location": _location,
    "marketing_permissions": lambda r, c: [dict(p) for p in r.permissions] if r.permissions else None,
    "source": lambda r, c: r.source,
    "tags_count": lambda r, c: len(r.tags) if r.tags else 0,
    "tags": _tags,
    "list_id": lambda r, c: c.list_id,
    "_links": lambda r, c: member_links(c, r.id),
}
#: Every key a member object may carry (valid targets for ``fields``).
MEMBER_KEYS = frozenset(MEMBER_BUILDERS) | {"sms_phone_number", "sms_subscription_status",
                                            "sms_subscription_last_updated", "last_note"}


def _render_full(r: Record, c: ListContext) -> dict:
    # Same result as running every MEMBER_BUILDERS entry, written out because
    # full pages of 1000 members are the hot path of an unfiltered snapshot.
    h = r.id
    mf = r.mf
    out = {
        "id": h,
        "email_address": r.email,
        "unique_email_id": unique_email_id(r.email),
        "contact_id": contact_id(r.origin, c.contact_mask),
        "full_name": _full_name(r, c) if mf else "",
        "web_id": 100_000_000 + r.seq,
        "email_type": r.email_type,
        "status": r.status,
    }
    if r.status == "unsubscribed" and r.unsub_reason is not None:
        out["unsubscribe_reason"] = r.unsub_reason
    out["consents_to_one_to_one_messaging"] = True
    out["merge_fields"] = {**c.mf_defaults, **mf} if mf else dict(c.mf_defaults)
    out["interests"] = dict(r.interests) if r.interests else {}
    out["stats"] = {"avg_open_rate": 0, "avg_click_rate": 0}
    out["ip_signup"] = r.ip_signup
    out["timestamp_signup"] = iso(r.ts_signup)
    out["ip_opt"] = r.ip_opt
    out["timestamp_opt"] = iso(r.ts_opt)
    out["member_rating"] = 2
    out["last_changed"] = iso(r.lc)
    out["language"] = r.language
    out["vip"] = r.vip
    out["email_client"] = ""
    out["location"] = _location(r, c)
    if r.permissions:
        out["marketing_permissions"] = [dict(p) for p in r.permissions]
    out["source"] = r.source
    out["tags_count"] = len(r.tags) if r.tags else 0
    out["tags"] = _tags(r, c)
    out["list_id"] = c.list_id
    out["_links"] = member_links(c, h)
    return out


def render_member(r: Record, c: ListContext, tree: dict | None = None) -> dict:
    """Member JSON; ``tree`` (from :func:`parse_paths`) limits it to requested keys."""
    if tree is None:
        return _render_full(r, c)
    out = {}
    for k, sub in tree.items():
        build = MEMBER_BUILDERS.get(k)
        if build is None:
            continue
        v = build(r, c)
        if v is not None:
            out[k] = v if sub is None else project_include(v, sub)
    return out


# --- partial responses -------------------------------------------------------

@functools.lru_cache(maxsize=256)  # the same few specs over and over; callers only read it
def parse_paths(spec: str | None) -> dict | None:
    """``"members.email_address,total_items"`` -> ``{"members": {"email_address": None},
    "total_items": None}``; ``None`` marks "this whole subtree" (shared: not to be changed)."""
    if not spec:
        return None
    tree: dict = {}
    for raw in spec.split(","):
        parts = [p for p in raw.strip().split(".") if p]
        if not parts:
            continue
        node = tree
        for i, p in enumerate(parts):
            last = i == len(parts) - 1
            if p in node and node[p] is None:
                break  # already whole
            if last:
                node[p] = None
            else:
                node = node.setdefault(p, {})
    return tree or None


def project_include(obj, tree: dict | None):
    if tree is None:
        return obj
    if isinstance(obj, dict):
        return {k: (obj[k] if sub is None else project_include(obj[k], sub))
                for k, sub in tree.items() if k in obj}
    if isinstance(obj, list):
        return [project_include(x, tree) for x in obj]
    return obj


def project_exclude(obj, tree: dict | None):
    if tree is None:
        return obj
    if isinstance(obj, dict):
        for k, sub in tree.items():
            if k in obj:
                if sub is None:
                    del obj[k]
                else:
                    project_exclude(obj[k], sub)
    elif isinstance(obj, list):
        for x in obj:
            project_exclude(x, tree)
    return obj


def unknown_paths(tree: dict | None, top: set | frozenset,
                  nested: dict | None = None, prefix: str = "") -> list[str]:
    """Names in ``tree`` that the resource does not have (checked two levels deep:
    the top-level keys and, for item collections, the item keys)."""
    if not tree:
        return []
    bad = []
    for k, sub in tree.items():
        if k not in top:
            bad.append(prefix + k)
        elif sub and nested and k in nested:
            bad.extend(unknown_paths(sub, nested[k], None, prefix + k + "."))
    return bad
