"""Routing and handlers of the emulated API, independent of HTTP.

``dispatch(emu, method, path, query, body, base)`` is the single entry point
for both the HTTP server and ``/batches`` operations, so a batched PUT behaves
exactly like a direct one.  ``path`` is relative to ``/3.0``; ``body`` is the
raw request body (bytes/str, parsed here) or already-parsed JSON.  Handlers
return plain data; failures are :class:`~.problems.ApiError`.
"""

from __future__ import annotations

import functools
import re
import sys
import traceback
import uuid
from urllib.parse import unquote

import orjson

from civimc_sandbox.emulator import problems as P
from civimc_sandbox.emulator import writes
from civimc_sandbox.emulator.activity import FILTERS, feed
from civimc_sandbox.emulator.records import GARBLED_ABSENT, STATUSES, iso, parse_time
from civimc_sandbox.emulator.render import (
    MEMBER_KEYS,
    link,
    parse_paths,
    project_exclude,
    project_include,
    render_member,
    unknown_paths,
)
from civimc_sandbox.emulator.views import Query

MAX_COUNT = 1000


class ApiResponse:
    """Result of one dispatched call.  ``body`` is JSON-able data or ``None`` (204);
    ``request_json`` is the parsed request body (for recording)."""

    __slots__ = ("status", "body", "headers", "request_json", "problem", "fragments")

    def __init__(self, status: int, body=None, headers: dict | None = None,
                 request_json=None, problem: bool = False, fragments: bool = False):
        self.status = status
        self.body = body
        self.headers = headers or {}
        self.request_json = request_json
        self.problem = problem
        self.fragments = fragments  # body holds pre-serialized orjson.Fragment members

    def json(self):
        return self.body


class Call:
    """Everything a handler needs about the current request."""

    __slots__ = ("emu", "method", "args", "query", "raw", "base", "_json", "_parsed", "fragments")

    def __init__(self, emu, method, args, query, raw, base):
        self.emu, self.method, self.args, self.query, self.raw, self.base = (
            emu, method, args, query, raw, base)
        self._parsed = False
        self._json = None
        self.fragments = False

    def json(self):
        if not self._parsed:
            raw = self.raw
            if raw is None or raw == b"" or raw == "":
                self._json = None
            elif isinstance(raw, (bytes, bytearray, memoryview, str)):
                try:
                    self._json = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    raise P.json_parse_error() from None  # stays unparsed: raises again
            else:
                self._json = raw
            self._parsed = True
        return self._json

    def lst(self):
        lst = self.emu.lists.get(self.args[0])
        if lst is None:
            raise P.not_found()
        return lst


# --- query helpers -----------------------------------------------------------

def _int_param(q: dict, name: str, default: int) -> int:
    v = q.get(name)
    if v is None or v == "":
        return default
    try:
        n = int(v)
    except ValueError:
        raise P.field_error(name, f"Schema describes integer, string found instead ({v!r})") from None
    if n < 0:
        raise P.field_error(name, f"{name} must be a non-negative integer")
    return n


def _bool_param(q: dict, name: str) -> bool:
    return str(q.get(name, "")).strip().lower() in ("true", "1", "yes")


def _time_param(q: dict, name: str) -> float | None:
    v = q.get(name)
    if v is None or v == "":
        return None
    try:
        return parse_time(v)
    except (ValueError, TypeError):
        raise P.field_error(name, "Please provide a valid ISO 8601 date-time, e.g. "
                                  "2015-10-21T15:41:36+00:00") from None


def _enum_param(q: dict, name: str, allowed) -> str | None:
    v = q.get(name)
    if v is None or v == "":
        return None
    if v not in allowed:
        raise P.field_error(name, "Value must be one of: " + ", ".join(allowed))
    return v


def _paging(call: Call) -> tuple[int, int]:
    count = _int_param(call.query, "count", 10)
    if count > MAX_COUNT:
        if call.emu.count_over_max == "error":
            raise P.field_error("count", f"count must be less than or equal to {MAX_COUNT}")
        count = MAX_COUNT
    return count, _int_param(call.query, "offset", 0)


def _projection(call: Call, top, nested=None):
    include = parse_paths(call.query.get("fields"))
    exclude = parse_paths(call.query.get("exclude_fields"))
    if include and call.emu.strict_fields:
        bad = unknown_paths(include, top, nested)
        if bad:
            raise P.fields_invalid(bad)
    return include, exclude


def _shape(call: Call, body: dict, top=None, nested=None) -> dict:
    include, exclude = _projection(call, top if top is not None else set(body), nested)
    if include:
        body = project_include(body, include)
    return project_exclude(body, exclude)


# --- handlers: root, ping, lists ------------------------------------------------

def h_root(call: Call):
    emu = call.emu
    total = sum(len(lst.index) for lst in emu.lists.values())
    body = {
        "account_id": "emulated00000000000000000", "login_id": "100000001",
        "account_name": "CiviMC Emulator", "email": "owner@example.org",
        "first_name": "Emulated", "last_name": "Owner", "username": "emulator",
        "avatar_url": "", "role": "owner", "member_since": "2020-01-01T00:00:00+00:00",
        "pricing_plan_type": "monthly", "first_payment": "", "account_timezone": "UTC",
        "account_industry": "Nonprofit",
        "contact": {"company": "Emulated Org", "addr1": "", "addr2": "", "city": "", "state": "",
                    "zip": "", "country": "US"},
        "pro_enabled": False, "last_login": "", "total_subscribers": total,
        "industry_stats": {"open_rate": 0, "bounce_rate": 0, "click_rate": 0},
        "_links": [link("self", call.base + "/", "GET", "Definitions/Root/Response.json")],
    }
    return _shape(call, body)


def h_ping(call: Call):
    return {"health_status": "Everything's Chimpy!"}


def render_list(emu, lst, base: str, include_total: bool) -> dict:
    c = lst.counts
    stats = {
        "member_count": c["subscribed"],
        "unsubscribe_count": c["unsubscribed"],
        "cleaned_count": c["cleaned"],
        "member_count_since_send": c["subscribed"],
        "unsubscribe_count_since_send": c["unsubscribed"],
        "cleaned_count_since_send": c["cleaned"],
        "campaign_count": 0,
        "campaign_last_sent": "",
        "merge_field_count": len(lst.merge_fields),
        "avg_sub_rate": 0,
        "avg_unsub_rate": 0,
        "target_sub_rate": 0,
        "open_rate": 0,
        "click_rate": 0,
        "last_sub_date": iso(lst.last_sub),
        "last_unsub_date": iso(lst.last_unsub),
    }
    if include_total:
        stats = {"member_count": stats.pop("member_count"),
                 "total_contacts": sum(c.values()), **stats}
    me = f"{base}/lists/{lst.id}"
    body = {
        "id": lst.id,
        "web_id": lst.web_id,
        "name": lst.name,
        "contact": {"company": "Emulated Org", "address1": "1 Example Street", "address2": "",
                    "city": "Springfield", "state": "", "zip": "00000", "country": "US",
                    "phone": ""},
        "permission_reminder": "You are receiving this email because you signed up on our website.",
        "use_archive_bar": True,
        "campaign_defaults": {"from_name": "Emulated Org", "from_email": "news@example.org",
                              "subject": "", "language": "en"},
        "notify_on_subscribe": "",
        "notify_on_unsubscribe": "",
        "date_created": iso(lst.created),
        "list_rating": 0,
        "email_type_option": False,
        "subscribe_url_short": f"http://eepurl.com/{lst.id[:6]}",
        "subscribe_url_long": f"https://emulated.{emu.dc}.list-manage.com/subscribe?u=0&id={lst.id}",
        "beamer_address": f"{emu.dc}-{lst.id}@inbound.mailchimp.com",
        "visibility": "prv",
        "double_optin": False,
        "has_welcome": False,
        "marketing_permissions": False,
        "modules": [],
        "stats": stats,
        "_links": [
            link("self", me, "GET", "Definitions/Lists/Response.json"),
            link("parent", f"{base}/lists", "GET", "Definitions/Lists/CollectionResponse.json",
                 "Paths/Lists/Lists.json"),
            link("update", me, "PATCH", "Definitions/Lists/Response.json",
                 "Definitions/Lists/PATCH.json"),
            link("batch-sub-unsub-members", me, "POST",
                 "Definitions/Lists/BatchPOST-Response.json", "Definitions/Lists/BatchPOST.json"),
            {"rel": "delete", "href": me, "method": "DELETE"},
            link("members", me + "/members", "GET",
                 "Definitions/Lists/Members/CollectionResponse.json"),
            link("merge-fields", me + "/merge-fields", "GET",
                 "Definitions/Lists/MergeFields/CollectionResponse.json"),
        ],
    }
    for k, v in lst.fields.items():  # add_list overrides
        body[k] = {**body[k], **v} if isinstance(body.get(k), dict) and isinstance(v, dict) else v
    return body


def h_lists(call: Call):
    emu = call.emu
    count, offset = _paging(call)
    inc = _bool_param(call.query, "include_total_contacts")
    with emu.lock:
        all_lists = list(emu.lists.values())
        rows = [render_list(emu, lst, call.base, inc) for lst in all_lists[offset:offset + count]]
    body = {"lists": rows, "total_items": len(all_lists),
            "constraints": {"may_create": True, "max_instances": 100,
                            "current_total_instances": len(all_lists)},
            "_links": [link("self", call.base + "/lists", "GET",
                            "Definitions/Lists/CollectionResponse.json")]}
    return _shape(call, body)


def h_list(call: Call):
    lst = call.lst()
    with call.emu.lock:
        body = render_list(call.emu, lst, call.base,
                           _bool_param(call.query, "include_total_contacts"))
    return _shape(call, body)


def h_batch_subscribe(call: Call):
    lst = call.lst()
    body = call.json()
    emu = call.emu
    with emu.lock:
        new, updated, errors = writes.batch_subscribe(
            emu, lst, body, _bool_param(call.query, "skip_duplicate_check"))
        ctx = lst.context(call.base)
        me = f"{call.base}/lists/{lst.id}"
        return {
            "new_members": [render_member(r, ctx) for r in new],
            "updated_members": [render_member(r, ctx) for r in updated],
            "errors": errors,
            "total_created": len(new),
            "total_updated": len(updated),
            "error_count": len(errors),
            "_links": [link("self", me, "GET", "Definitions/Lists/BatchPOST-Response.json"),
                       link("parent", me, "GET", "Definitions/Lists/Response.json")],
        }


def h_merge_fields(call: Call):
    lst = call.lst()
    count, offset = _paging(call)
    me = f"{call.base}/lists/{lst.id}/merge-fields"
    rows = []
    for m in lst.merge_fields[offset:offset + count]:
        rows.append({"merge_id": m["merge_id"], "tag": m["tag"], "name": m["name"],
                     "type": m["type"], "required": bool(m.get("required", False)),
                     "default_value": m.get("default_value", ""), "public": True,
                     "display_order": m["merge_id"] + 1, "options": m.get("options", {}),
                     "help_text": "", "list_id": lst.id,
                     "_links": [link("self", f"{me}/{m['merge_id']}", "GET")]})
    return _shape(call, {"merge_fields": rows, "list_id": lst.id,
                         "total_items": len(lst.merge_fields),
                         "_links": [link("self", me, "GET")]})


# --- handlers: interest categories and interests --------------------------------

def _category(call: Call, lst) -> dict:
    cat = lst.catalogue.category(call.args[1])
    if cat is None:
        raise P.not_found()
    return cat


def h_interest_categories(call: Call):
    lst = call.lst()
    count, offset = _paging(call)
    kind = _enum_param(call.query, "type", ("checkboxes", "dropdown", "radio", "hidden"))
    me = f"{call.base}/lists/{lst.id}/interest-categories"
    with call.emu.lock:
        cats = [c for c in lst.catalogue.categories if kind is None or c["type"] == kind]
        rows = [{"list_id": lst.id, "id": c["id"], "title": c["title"],
                 "display_order": c["display_order"], "type": c["type"],
                 "_links": [link("self", f"{me}/{c['id']}", "GET"),
                            link("interests", f"{me}/{c['id']}/interests", "GET")]}
                for c in cats[offset:offset + count]]
    return _shape(call, {"list_id": lst.id, "categories": rows, "total_items": len(cats),
                         "_links": [link("self", me, "GET")]})


def h_interests(call: Call):
    lst = call.lst()
    count, offset = _paging(call)
    with call.emu.lock:
        cat = _category(call, lst)
        me = f"{call.base}/lists/{lst.id}/interest-categories/{cat['id']}/interests"
        items = cat["interests"]
        rows = [{"category_id": cat["id"], "list_id": lst.id, "id": i["id"], "name": i["name"],
                 "subscriber_count": str(_subscribers(lst, i["id"])),
                 "display_order": i["display_order"],
                 "_links": [link("self", f"{me}/{i['id']}", "GET")]}
                for i in items[offset:offset + count]]
    return _shape(call, {"interests": rows, "list_id": lst.id, "category_id": cat["id"],
                         "total_items": len(items), "_links": [link("self", me, "GET")]})


def _subscribers(lst, interest_id: str) -> int:
    return sum(1 for r in lst.order
               if r.status == "subscribed" and r.interests and r.interests.get(interest_id))


# --- handlers: members -----------------------------------------------------------

_COLLECTION_KEYS = frozenset(("members", "list_id", "total_items", "_links"))


def _members_query(q: dict) -> Query:
    sort_field = _enum_param(q, "sort_field", ("timestamp_opt", "timestamp_signup", "last_changed"))
    sort_dir = _enum_param(q, "sort_dir", ("ASC", "DESC"))
    status = _enum_param(q, "status", STATUSES)
    if _bool_param(q, "since_last_campaign") and not status:
        raise P.field_error("since_last_campaign", "Member status is required to use this filter.")
    if q.get("unsubscribed_since") and status != "unsubscribed":
        raise P.field_error("unsubscribed_since", "Using any status other than unsubscribed "
                                                  "with this filter will result in an error.")
    return Query(
        status=status,
        since_lc=_time_param(q, "since_last_changed"),
        before_lc=_time_param(q, "before_last_changed"),
        since_opt=_time_param(q, "since_timestamp_opt"),
        before_opt=_time_param(q, "before_timestamp_opt"),
        email_type=_enum_param(q, "email_type", ("html", "text")),
        vip_only=_bool_param(q, "vip_only"),
        unique_email_id=q.get("unique_email_id") or None,
        sort_field=sort_field,
        desc=sort_dir == "DESC",
    )


def h_members(call: Call):
    """GET /lists/{id}/members.

    Without ``status`` every member of every status is returned, archived
    included (our choice; the real behaviour for archived is unverified).
    """
    emu = call.emu
    lst = call.lst()
    count, offset = _paging(call)
    q = _members_query(call.query)
    if q.status is None and not emu.archived_in_default_listing:
        q = q._replace(hide_archived=True)
    include, exclude = _projection(call, _COLLECTION_KEYS, {"members": MEMBER_KEYS})
    hook = emu.on_members_page
    if hook is not None:
        hook(emu, lst.id, offset)
    if include is None:
        mtree, want_members = None, True
    else:
        want_members = "members" in include
        mtree = include.get("members")
    with emu.lock:
        view = lst.views.get(lst, q)
        total = len(view)
        if want_members:
            ctx = lst.context(call.base)
            recs = view[offset:offset + count]
            if (mtree is not None and exclude is None and emu.render_cache and not emu.garbled
                    and emu.on_members_body is None):
                members = _cached_members(lst, call, ctx, mtree, recs)
            else:
                members = [garble(emu, r, render_member(r, ctx, mtree)) for r in recs]
    coll = f"{call.base}/lists/{lst.id}/members"
    body = {}
    if want_members:
        body["members"] = members
    body["list_id"] = lst.id
    body["total_items"] = total
    body["_links"] = [
        link("self", coll, "GET", "Definitions/Lists/Members/CollectionResponse.json",
             "Paths/Lists/Members/Collection.json"),
        link("parent", f"{call.base}/lists/{lst.id}", "GET", "Definitions/Lists/Response.json"),
        link("create", coll, "POST", "Definitions/Lists/Members/Response.json",
             "Definitions/Lists/Members/POST.json"),
    ]
    if include:
        top = {k: (None if k == "members" else v) for k, v in include.items()}
        body = project_include(body, top)
    body = project_exclude(body, exclude)
    rewrite = emu.on_members_body
    return body if rewrite is None else rewrite(lst.id, offset, body)


def _cached_members(lst, call: Call, ctx, mtree: dict, recs) -> list:
    """Projected members as cached JSON fragments: a snapshot that pages the same audience
    again (benchmarks, verify runs) costs the emulator a dict lookup per member. Entries are
    dropped by ``ListState.note_change`` when a member changes."""
    cache = lst.render_cache(call.base, call.query.get("fields"))
    dumps, frag = orjson.dumps, orjson.Fragment
    out = []
    for r in recs:
        b = cache.get(r)
        if b is None:
            b = cache[r] = dumps(render_member(r, ctx, mtree))
        out.append(frag(b))
    call.fragments = True
    return out


def garble(emu, rec, body: dict) -> dict:
    """The member as sent, with the keys ``emu.garbled`` overrides for it (only those the
    response carries; ``GARBLED_ABSENT`` removes one)."""
    over = emu.garbled.get(rec.id)
    if not over:
        return body
    out = dict(body)
    for key, value in over.items():
        if key in out and value is GARBLED_ABSENT:
            del out[key]
        elif key in out:
            out[key] = value
    return out


def _member_out(call: Call, lst, rec):
    body = garble(call.emu, rec, render_member(rec, lst.context(call.base)))
    return _shape(call, body, MEMBER_KEYS)


def h_member_get(call: Call):
    lst = call.lst()
    with call.emu.lock:
        rec = lst.lookup(call.args[1])
        if rec is None:
            raise P.not_found()
        return _member_out(call, lst, rec)


def h_member_post(call: Call):
    lst = call.lst()
    body = call.json()
    with call.emu.lock:
        rec = writes.add_member(call.emu, lst, body)
        return _member_out(call, lst, rec)


def h_member_put(call: Call):
    lst = call.lst()
    body = call.json()
    with call.emu.lock:
        rec = writes.upsert_member(call.emu, lst, call.args[1], body)
        return _member_out(call, lst, rec)


def h_member_patch(call: Call):
    lst = call.lst()
    body = call.json()
    with call.emu.lock:
        rec = writes.update_member(call.emu, lst, call.args[1], body if body is not None else {})
        return _member_out(call, lst, rec)


def h_member_delete(call: Call):
    lst = call.lst()
    with call.emu.lock:
        writes.archive_member(call.emu, lst, call.args[1])
    return None


def h_member_forget(call: Call):
    lst = call.lst()
    with call.emu.lock:
        writes.delete_permanent(call.emu, lst, call.args[1])
    return None


def h_tags_get(call: Call):
    lst = call.lst()
    count, offset = _paging(call)
    with call.emu.lock:
        rec = lst.lookup(call.args[1])
        if rec is None:
            raise P.not_found()
        tags = list((rec.tags or {}).items())
        rows = [{"id": lst.tag_id(n), "name": n, "date_added": iso(ts)}
                for n, ts in tags[offset:offset + count]]
        me = f"{call.base}/lists/{lst.id}/members/{rec.id}/tags"
    return _shape(call, {"tags": rows, "total_items": len(tags),
                         "_links": [link("self", me, "GET")]})


def h_tags_post(call: Call):
    lst = call.lst()
    body = call.json()
    with call.emu.lock:
        writes.update_tags(call.emu, lst, call.args[1], body)
    return None


def _activity_filters(q: dict) -> frozenset[str] | None:
    v = q.get("activity_filters")
    if v is None or v == "":
        return None
    return _filters(str(v))


@functools.lru_cache(maxsize=64)
def _filters(v: str) -> frozenset[str]:
    wanted = frozenset(x.strip() for x in v.split(","))
    bad = sorted(wanted - set(FILTERS))
    if bad:
        raise P.field_error("activity_filters", "Value must be one of: " + ", ".join(FILTERS)
                            + f" ({', '.join(bad)} given)")
    return wanted


def h_activity_feed(call: Call):
    """GET /lists/{id}/members/{hash}/activity-feed: most recent first (see .activity)."""
    lst = call.lst()
    count, offset = _paging(call)
    wanted = _activity_filters(call.query)
    with call.emu.lock:
        rec = lst.lookup(call.args[1])
        if rec is None:
            raise P.not_found()
        events = feed(rec, wanted)
        me = f"{call.base}/lists/{lst.id}/members/{rec.id}/activity-feed"
        body = {"activity": events[offset:offset + count], "email_id": rec.id,
                "list_id": lst.id, "total_items": len(events),
                "_links": [link("self", me, "GET",
                                "Definitions/Lists/Members/ActivityFeed/Response.json"),
                           link("parent", f"{call.base}/lists/{lst.id}/members/{rec.id}",
                                "GET", "Definitions/Lists/Members/Response.json")]}
    return _shape(call, body)


# --- handlers: batches -----------------------------------------------------------

def h_batches_post(call: Call):
    b = call.emu.batches.submit(call.json())
    return call.emu.batches.render(b, call.base)


def h_batches_get(call: Call):
    store = call.emu.batches
    count, offset = _paging(call)
    items = store.all()
    return _shape(call, {"batches": [store.render(b, call.base) for b in items[offset:offset + count]],
                         "total_items": len(items),
                         "_links": [link("self", call.base + "/batches", "GET")]})


def h_batch_get(call: Call):
    store = call.emu.batches
    return _shape(call, store.render(store.poll(call.args[0]), call.base))


def h_batch_delete(call: Call):
    call.emu.batches.delete(call.args[0])
    return None


# --- routing ----------------------------------------------------------------------

_SEG = r"([^/]+)"
_L = "/lists/{list_id}"
_M = _L + "/members/{subscriber_hash}"
# (pattern, spec path template, handlers by method)
ROUTES = [
    (re.compile(r"^/?$"), "/", {"GET": h_root}),
    (re.compile(r"^/ping$"), "/ping", {"GET": h_ping}),
    (re.compile(r"^/lists$"), "/lists", {"GET": h_lists}),
    (re.compile(rf"^/lists/{_SEG}$"), _L, {"GET": h_list, "POST": h_batch_subscribe}),
    (re.compile(rf"^/lists/{_SEG}/merge-fields$"), _L + "/merge-fields", {"GET": h_merge_fields}),
    (re.compile(rf"^/lists/{_SEG}/interest-categories$"), _L + "/interest-categories",
     {"GET": h_interest_categories}),
    (re.compile(rf"^/lists/{_SEG}/interest-categories/{_SEG}/interests$"),
     _L + "/interest-categories/{interest_category_id}/interests", {"GET": h_interests}),
    (re.compile(rf"^/lists/{_SEG}/members$"), _L + "/members",
     {"GET": h_members, "POST": h_member_post}),
    (re.compile(rf"^/lists/{_SEG}/members/{_SEG}$"), _M,
     {"GET": h_member_get, "PUT": h_member_put, "PATCH": h_member_patch,
      "DELETE": h_member_delete}),
    (re.compile(rf"^/lists/{_SEG}/members/{_SEG}/actions/delete-permanent$"),
     _M + "/actions/delete-permanent", {"POST": h_member_forget}),
    (re.compile(rf"^/lists/{_SEG}/members/{_SEG}/tags$"), _M + "/tags",
     {"GET": h_tags_get, "POST": h_tags_post}),
    (re.compile(rf"^/lists/{_SEG}/members/{_SEG}/activity-feed$"), _M + "/activity-feed",
     {"GET": h_activity_feed}),
    (re.compile(r"^/batches$"), "/batches", {"GET": h_batches_get, "POST": h_batches_post}),
    (re.compile(rf"^/batches/{_SEG}$"), "/batches/{batch_id}",
     {"GET": h_batch_get, "DELETE": h_batch_delete}),
]


def _by_depth() -> dict[int, list]:
    """The routes by how many ``/`` their paths have (the root: none or one), so that a path
    is matched against the few that can match it (a batch dispatches its operations here)."""
    out: dict[int, list] = {}
    for r in ROUTES:
        depth = r[1].count("/")
        for d in ((0, 1) if r[1] == "/" else (depth,)):
            out.setdefault(d, []).append(r)
    return out


_ROUTES_BY_DEPTH = _by_depth()


def route(method: str, path: str):
    """Return ``(handler, args, spec template)``; raises 404/405 problems."""
    path = path.rstrip("/") if len(path) > 1 else path
    for rx, template, methods in _ROUTES_BY_DEPTH.get(path.count("/"), ()):
        m = rx.match(path)
        if m:
            h = methods.get(method)
            if h is None:
                raise P.method_not_allowed(", ".join(methods))
            return h, tuple(unquote(g) for g in m.groups()), template
    raise P.not_found()


def dispatch(emu, method: str, path: str, query: dict, body, base: str,
             request_id: str | None = None) -> ApiResponse:
    """Run one API call and turn every outcome into an :class:`ApiResponse`."""
    call = None
    template = None
    checker = emu.spec_checker
    method = method.upper()
    try:
        handler, args, template = route(method, path)
        call = Call(emu, method, args, query, body, base)
        if checker is not None:
            _check_request(checker, call, template, path)
        result = handler(call)
        req = call.json() if call._parsed else None
        resp = (ApiResponse(204, None, request_json=req) if result is None
                else ApiResponse(200, result, request_json=req, fragments=call.fragments))
    except P.ApiError as e:
        resp = _problem(e, request_id, call)
    except Exception:  # an emulator bug: still answer like the API would
        traceback.print_exc(file=sys.stderr)
        resp = _problem(P.internal_error(), request_id, call)
    if checker is not None and template is not None:
        body = orjson.loads(orjson.dumps(resp.body)) if resp.fragments else resp.body
        checker.check_response(method, template, path, resp.status, body)
    return resp


def _check_request(checker, call: Call, template: str, path: str) -> None:
    try:
        body = call.json()
    except P.ApiError:
        return  # unparseable: the handler answers "JSON Parse Error"
    msgs = checker.check_request(call.method, template, path, call.query, body)
    if msgs and checker.mode == "reject":
        raise P.invalid_resource([{"field": "", "message": m} for m in msgs])


def _problem(e: P.ApiError, request_id: str | None, call: Call | None) -> ApiResponse:
    req = call._json if call is not None and call._parsed else None
    return ApiResponse(e.status, e.document(request_id or str(uuid.uuid4())), dict(e.headers),
                       request_json=req, problem=True)
