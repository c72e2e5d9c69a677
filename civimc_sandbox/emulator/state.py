"""The emulator's state: audiences, members, tombstones, recorded requests.

``Emulator`` is the object tests and the demo talk to directly (set-up,
inspection, fault switches); HTTP lives in :mod:`.server`, API routing in
:mod:`.api` and the API's write rules in :mod:`.writes`.  Direct set-up calls
(``add_member``, ``load_members``, ``update_member``) act like an
administrator or an import: they bypass the API's compliance rules so a test
can build any starting state.
"""

from __future__ import annotations

import gc
import hashlib
import secrets
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from civimc_sandbox.emulator.activity import fixture_events, note_status_change
from civimc_sandbox.emulator.faults import Faults
from civimc_sandbox.emulator.interests import Catalogue
from civimc_sandbox.emulator.records import STATUSES, Record, member_hash, now_ts, parse_ts
from civimc_sandbox.emulator.render import ListContext, render_member
from civimc_sandbox.emulator.views import ViewCache

DEFAULT_API_KEY = "0123456789abcdef0123456789abcdef-us1"
DEFAULT_MERGE_FIELDS = (
    ("FNAME", "First Name", "text"),
    ("LNAME", "Last Name", "text"),
    ("ADDRESS", "Address", "address"),
    ("PHONE", "Phone Number", "phone"),
)
_STATUS_SET = frozenset(STATUSES)
_LOG_MAX = 20_000


@dataclass
class RecordedRequest:
    """One request as the server saw it.  Also readable like a dict (``r["status"]``).

    ``path`` is the request path as sent (``/3.0/lists/...``), ``query`` a dict
    of single values, ``body`` the parsed JSON request body (``None`` when
    absent, unparseable or ``record_bodies`` is off), ``status`` the response
    code (0 for a dropped connection), ``response`` the response JSON (or
    ``None``), ``fault`` the injected fault kind if any.
    """

    method: str
    path: str
    query: dict
    body: Any
    status: int
    response: Any
    request_id: str = ""
    fault: str | None = None
    duration: float = 0.0
    extra: dict = field(default_factory=dict)

    @property
    def response_body(self):
        return self.response

    def __getitem__(self, key):
        return getattr(self, key)

    def get(self, key, default=None):
        return getattr(self, key, default)


class ListState:
    """One audience: member index, insertion order, counters and change log."""

    def __init__(self, list_id: str, name: str, created: int, web_id: int,
                 merge_fields: Iterable, fields: dict):
        self.id = list_id
        self.name = name
        self.created = created
        self.web_id = web_id
        self.fields = fields  # overrides for the rendered list object
        self.merge_fields = _merge_field_defs(merge_fields)
        self.catalogue = Catalogue(list_id)  # interest categories and interests
        self.mf_defaults = {m["tag"]: "" for m in self.merge_fields}
        self.index: dict[str, Record] = {}
        self.order: list[Record] = []
        self.moved: dict[str, Record] = {}  # origin hash -> member whose email changed
        self.tombstones: set[str] = set()
        self.counts = dict.fromkeys(STATUSES, 0)
        self.tag_ids: dict[str, int] = {}
        self.last_sub: int | None = None
        self.last_unsub: int | None = None
        self.version = 0
        self._log: list[tuple[int, Record, Record | None]] = []
        self._log_floor = 0
        self.views = ViewCache()
        self._renders: dict[tuple, dict[Record, bytes]] = {}
        self.contact_mask = int(hashlib.md5(("contact:" + list_id).encode()).hexdigest(), 16)
        self._contexts: dict[str, ListContext] = {}

    # --- change tracking (drives the view cache) --------------------------
    def note_change(self, rec: Record, before: Record | None) -> None:
        for cache in self._renders.values():
            cache.pop(rec, None)
        self.version += 1
        self._log.append((self.version, rec, before))
        if len(self._log) > _LOG_MAX:
            del self._log[: _LOG_MAX // 2]
            self._log_floor = self._log[0][0] - 1

    def bulk_changed(self) -> None:
        self._renders.clear()
        self.version += 1
        self._log.clear()
        self._log_floor = self.version

    def changes_since(self, version: int) -> dict | None:
        if version < self._log_floor:
            return None
        i = bisect_left(self._log, version + 1, key=lambda e: e[0])
        out: dict = {}
        for _, rec, before in self._log[i:]:
            if rec not in out:
                out[rec] = before
        return out

    # --- membership ---------------------------------------------------------
    def lookup(self, key: str) -> Record | None:
        """Find a member by subscriber hash, email address, or contact_id."""
        k = key.strip()
        if "@" in k:
            return self.index.get(member_hash(k))
        k = k.lower()
        rec = self.index.get(k)
        if rec is None and len(k) == 32:
            try:
                origin = format(int(k, 16) ^ self.contact_mask, "032x")
            except ValueError:
                return None
            rec = self.index.get(origin)
            if rec is None or rec.origin != origin:
                rec = self.moved.get(origin)
        return rec

    def insert(self, rec: Record) -> None:
        self.index[rec.id] = rec
        self.order.append(rec)
        self.counts[rec.status] += 1

    def remove(self, rec: Record) -> None:
        del self.index[rec.id]
        i = bisect_left(self.order, rec.seq, key=lambda r: r.seq)
        if i < len(self.order) and self.order[i] is rec:
            del self.order[i]
        else:
            self.order.remove(rec)
        self.moved.pop(rec.origin, None)
        self.counts[rec.status] -= 1

    def rekey(self, rec: Record, new_email: str) -> None:
        del self.index[rec.id]
        rec.email = new_email
        rec.id = member_hash(new_email)
        self.index[rec.id] = rec
        if rec.id == rec.origin:
            self.moved.pop(rec.origin, None)
        else:
            self.moved[rec.origin] = rec

    def render_cache(self, base: str, fields: str | None, keep: int = 3) -> dict:
        """Serialized members for one (base URL, ``fields``) projection; a few are kept."""
        key = (base, fields)
        cache = self._renders.pop(key, None)
        if cache is None:
            cache = {}
        self._renders[key] = cache  # most recently used last
        while len(self._renders) > keep:
            self._renders.pop(next(iter(self._renders)))
        return cache

    def tag_id(self, name: str) -> int:
        tid = self.tag_ids.get(name)
        if tid is None:
            tid = self.tag_ids[name] = 1_000_000 + len(self.tag_ids) + 1
        return tid

    def context(self, base: str) -> ListContext:
        ctx = self._contexts.get(base)
        if ctx is None:
            ctx = self._contexts[base] = ListContext(self.id, base, self.mf_defaults, self.tag_ids)
        return ctx


def _merge_field_defs(spec: Iterable) -> list[dict]:
    out = []
    for i, m in enumerate(spec, start=1):
        if isinstance(m, str):
            m = (m, m.title(), "text")
        if isinstance(m, (tuple, list)):
            tag, name, typ = (list(m) + [None, "text"])[:3]
            m = {"tag": tag, "name": name or tag, "type": typ or "text"}
        m = dict(m)
        m.setdefault("merge_id", i)
        m.setdefault("name", m["tag"])
        m.setdefault("type", "text")
        out.append(m)
    return out


class Emulator:
    """Stateful stand-in for the Mailchimp Marketing API (no HTTP here).

    Knobs, all switchable at runtime:

    ``api_key``            the only key the server accepts
    ``max_connections``    simultaneous requests before 429 (``None`` = unlimited)
    ``faults``             :class:`~.faults.Faults`
    ``on_members_page``    ``callable(emu, list_id, offset)`` run before each members page
    ``on_members_body``    ``callable(list_id, offset, body) -> body`` rewrites each members
                           page as it is sent (members as plain dicts): how tests serve what
                           the real API should not — a member without ``last_changed``, an
                           unknown status, one member twice, a page shorter than its total
    ``record_bodies``      keep request/response bodies in ``requests`` (off for benchmarks)
    ``record_requests``    keep ``requests`` at all
    ``count_over_max``     ``"clamp"`` (default) or ``"error"`` for ``count`` > 1000
    ``strict_fields``      unknown names in ``fields=`` give 422 (``exclude_fields`` is lenient)
    ``fake_domains``       email domains answered with "looks fake or invalid"
    ``batch_polls_to_finish`` / ``batch_finish_after``  when a /batches job finishes
    ``batch_results_per_file`` / ``batch_shuffle_results``  shape of the results archive
    ``clock``              ``callable() -> epoch seconds | datetime`` used for "now"
    ``gzip``               gzip JSON responses when the client accepts it
    ``spec_checker``       a :class:`~.spec.SpecChecker` (None = off)
    ``archived_in_default_listing``  GET /members without ``status`` includes archived
                           members (default; real behaviour unverified, False hides them)
    ``render_cache``       cache projected member JSON between pages (see ``api``)
    ``garbled``            member id -> {key: value} sent in place of the member's own keys
                           (``GARBLED_ABSENT`` leaves the key out): the malformed records a
                           client must survive (an unknown status, no ``last_changed``, a
                           null email, no id), in listings and single-member reads
    """

    def __init__(self, api_key: str = DEFAULT_API_KEY, *, seed: int | None = 0,
                 fake_domains: Iterable[str] = ("example.invalid",),
                 clock: Callable[[], Any] | None = None):
        from civimc_sandbox.emulator.batches import BatchStore

        self.api_key = api_key
        self.dc = api_key.rpartition("-")[2] if "-" in api_key else "us1"
        self.lock = threading.RLock()
        self.lists: dict[str, ListState] = {}
        self.requests: list[RecordedRequest] = []
        self.record_bodies = True
        self.record_requests = True
        self.faults = Faults(seed)
        self.on_members_page: Callable | None = None
        self.on_members_body: Callable | None = None
        self.max_connections: int | None = 10
        self.count_over_max = "clamp"
        self.strict_fields = True
        self.fake_domains = {d.lower() for d in fake_domains}
        self.clock = clock
        self.gzip = False
        self.spec_checker = None  # a spec.SpecChecker to check all traffic against the spec
        self.archived_in_default_listing = True
        self.render_cache = True
        self.garbled: dict[str, dict] = {}
        self.batch_polls_to_finish: int | None = 2
        self.batch_finish_after: float | None = 2.0
        self.batch_results_per_file = 200
        self.batch_shuffle_results = True
        self.base_url = f"https://{self.dc}.api.mailchimp.com/3.0"
        self.batches = BatchStore(self)
        self._seq = 0
        self._inflight = 0
        self._inflight_lock = threading.Lock()
        self.peak_inflight = 0

    # --- time ---------------------------------------------------------------
    def now(self) -> int:
        if self.clock is None:
            return now_ts()
        v = self.clock()
        return int(v) if isinstance(v, (int, float)) else parse_ts(v)

    # --- lists --------------------------------------------------------------
    def add_list(self, list_id: str | None = None, name: str = "Newsletter", *,
                 merge_fields: Iterable | None = None, date_created=None, **fields) -> None:
        """Create an audience.  ``fields`` override parts of the list object
        (``contact``, ``campaign_defaults``, ``permission_reminder``, ``double_optin``...);
        ``merge_fields`` is a list of tags or ``(tag, name, type)`` (default FNAME,
        LNAME, ADDRESS, PHONE)."""
        list_id = list_id or secrets.token_hex(5)
        with self.lock:
            if list_id in self.lists:
                raise ValueError(f"list {list_id} already exists")
            created = parse_ts(date_created) if date_created is not None else self.now()
            self.lists[list_id] = ListState(
                list_id, name, created, 100_000 + len(self.lists) + 1,
                DEFAULT_MERGE_FIELDS if merge_fields is None else merge_fields, fields)

    def add_interest_category(self, list_id: str, title: str, interests=(), *,
                              category_id: str | None = None, type: str = "checkboxes") -> dict:
        """Create an interest category with `interests` (names, or (id, name) pairs) in an
        audience; returns {"id", "title", "interests": {name: id}}. Members that exist already
        get no entry for the new interests (see interests.py)."""
        with self.lock:
            lst = self.list_state(list_id)
            cat = lst.catalogue.add_category(title, interests, category_id=category_id,
                                             type=type)
            lst.bulk_changed()
            return {"id": cat["id"], "title": title,
                    "interests": {i["name"]: i["id"] for i in cat["interests"]}}

    def add_interest(self, list_id: str, category_id: str, name: str, *,
                     interest_id: str | None = None) -> str:
        """Add one interest to a category; returns its id."""
        with self.lock:
            lst = self.list_state(list_id)
            iid = lst.catalogue.add_interest(category_id, name, interest_id=interest_id)
            lst.bulk_changed()
            return iid

    def list_state(self, list_id: str) -> ListState:
        try:
            return self.lists[list_id]
        except KeyError:
            raise KeyError(f"no list {list_id!r} in the emulator") from None

    def list_info(self, list_id: str, include_total_contacts: bool = True) -> dict:
        from civimc_sandbox.emulator.api import render_list
        with self.lock:
            return render_list(self, self.list_state(list_id), self.base_url,
                               include_total_contacts)

    # --- members: set-up and inspection ------------------------------------
    def add_member(self, list_id: str, email_address: str, status: str = "subscribed",
                   last_changed=None, merge_fields: dict | None = None,
                   timestamp_opt=None, timestamp_signup=None, **extra) -> dict:
        """Insert a member directly (no API rules).  ``extra``: ip_opt, ip_signup,
        email_type, language, vip, tags (names), interests, location, source,
        unsubscribe_reason, prev_status (for archived members), activity (the member's
        activity feed: event dicts with ``activity_type`` and ``created_at_timestamp``, see
        :mod:`.activity`; none by default).  Raises
        ``ValueError`` if the email is already on the list."""
        lst = self.list_state(list_id)
        with self.lock:
            h = member_hash(email_address)
            if h in lst.index:
                raise ValueError(f"{email_address} is already on list {list_id}")
            if status not in _STATUS_SET:
                raise ValueError(f"bad status {status!r}")
            lc = parse_ts(last_changed)
            rec = Record(email_address.strip(), h, status, self.now() if lc is None else lc,
                         dict(merge_fields) if merge_fields else None, self._next_seq())
            rec.ts_opt = parse_ts(timestamp_opt)
            rec.ts_signup = parse_ts(timestamp_signup)
            if status == "archived":
                rec.prev_status = "subscribed"
            _apply_admin(lst, rec, extra)
            lst.tombstones.discard(h)
            lst.insert(rec)
            lst.note_change(rec, None)
            return render_member(rec, lst.context(self.base_url))

    def load_members(self, list_id: str, members: Iterable[dict]) -> int:
        """Bulk-load member dicts (``email_address``, ``status``, ``last_changed``,
        ``merge_fields`` and optionally the ``add_member`` extras).  An email already
        present is overwritten in place.  Returns the number of dicts loaded."""
        lst = self.list_state(list_id)
        basic = {"email_address", "status", "last_changed", "merge_fields"}
        n = 0
        # Millions of new objects would trigger repeated full GC passes (the
        # main cost of a naive load); nothing here creates reference cycles.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            with self.lock:
                n = self._load(lst, members, basic)
        finally:
            if gc_was_enabled:
                gc.enable()
        return n

    def _load(self, lst: ListState, members: Iterable[dict], basic: set) -> int:
        n = 0
        index, order, counts = lst.index, lst.order, lst.counts
        seq, now = self._seq, self.now()
        fromisoformat = datetime.fromisoformat
        ts_cache: dict = {}  # imports share timestamps a lot; parsing is the next cost
        try:
            for d in members:
                email = d["email_address"].strip()
                h = member_hash(email)
                status = d.get("status") or "subscribed"
                if status not in _STATUS_SET:
                    raise ValueError(f"bad status {status!r} for {email}")
                raw = d.get("last_changed")
                if type(raw) is str and raw:
                    lc = ts_cache.get(raw)
                    if lc is None:
                        dt = fromisoformat(raw)  # 3.11: accepts Z, offsets, fractions
                        if dt.tzinfo is None:
                            dt = dt.replace(tzinfo=UTC)
                        lc = int(dt.timestamp() // 1)
                        if len(ts_cache) > 200_000:
                            ts_cache.clear()
                        ts_cache[raw] = lc
                elif raw is None or raw == "":
                    lc = now
                else:
                    lc = parse_ts(raw)
                mf = d.get("merge_fields")
                mf = dict(mf) if mf else None
                rec = index.get(h)
                if rec is None:
                    rec = Record(email, h, status, lc, mf, seq)
                    seq += 1
                    index[h] = rec
                    order.append(rec)
                else:
                    counts[rec.status] -= 1
                    rec.email, rec.status, rec.lc, rec.mf = email, status, lc, mf
                counts[status] += 1
                if status == "archived" and rec.prev_status is None:
                    rec.prev_status = "subscribed"
                if len(d) > 4 or not d.keys() <= basic:
                    extra = {k: v for k, v in d.items() if k not in basic}
                    counts[status] -= 1
                    _apply_admin(lst, rec, extra)
                    counts[rec.status] += 1
                n += 1
        finally:
            self._seq = seq
            lst.bulk_changed()
        return n

    def update_member(self, list_id: str, email_or_hash: str, *, last_changed=None,
                      **changes) -> dict:
        """Edit a member directly (no API rules), e.g. from ``on_members_page``.
        ``changes``: status, merge_fields (merged), email_address, timestamp_opt,
        and the ``add_member`` extras.  ``last_changed`` defaults to now.  A change of status
        to subscribed or unsubscribed adds its event to the activity feed at that time (an
        administrator's change, which Mailchimp records); other edits add none."""
        lst = self.list_state(list_id)
        with self.lock:
            rec = lst.lookup(email_or_hash)
            if rec is None:
                raise KeyError(f"{email_or_hash} is not on list {list_id}")
            before = rec.copy()
            if "email_address" in changes:
                lst.rekey(rec, changes.pop("email_address").strip())
            if "merge_fields" in changes:
                mf = changes.pop("merge_fields") or {}
                rec.mf = {**(rec.mf or {}), **mf}
            for k in ("timestamp_opt", "timestamp_signup"):
                if k in changes:
                    setattr(rec, "ts_opt" if k == "timestamp_opt" else "ts_signup",
                            parse_ts(changes.pop(k)))
            lc = parse_ts(last_changed)
            lc = self.now() if lc is None else lc
            if "status" in changes:
                new = changes.pop("status")
                if new not in _STATUS_SET:
                    raise ValueError(f"bad status {new!r}")
                lst.counts[rec.status] -= 1
                if new == "archived":
                    if rec.status != "archived":
                        rec.prev_status = rec.status
                else:
                    rec.prev_status = None
                old, rec.status = rec.status, new
                lst.counts[new] += 1
                note_status_change(rec, old, new, lc)
            _apply_admin(lst, rec, changes)
            rec.lc = lc
            lst.note_change(rec, before)
            return render_member(rec, lst.context(self.base_url))

    def delete_member(self, list_id: str, email_or_hash: str, permanent: bool = False) -> None:
        """Archive a member (any status) or, with ``permanent``, forget it (tombstone)."""
        lst = self.list_state(list_id)
        with self.lock:
            rec = lst.lookup(email_or_hash)
            if rec is None:
                raise KeyError(f"{email_or_hash} is not on list {list_id}")
            before = rec.copy()
            if permanent:
                lst.remove(rec)
                lst.tombstones.add(rec.id)
            else:
                lst.counts[rec.status] -= 1
                if rec.status != "archived":
                    rec.prev_status = rec.status
                rec.status = "archived"
                lst.counts["archived"] += 1
                rec.lc = self.now()
            lst.note_change(rec, before)

    def get_member(self, list_id: str, email_or_hash: str) -> dict | None:
        lst = self.list_state(list_id)
        with self.lock:
            rec = lst.lookup(email_or_hash)
            return None if rec is None else render_member(rec, lst.context(self.base_url))

    def members(self, list_id: str) -> list[dict]:
        """Every member of the list (all statuses) in insertion order."""
        lst = self.list_state(list_id)
        with self.lock:
            ctx = lst.context(self.base_url)
            return [render_member(r, ctx) for r in lst.order]

    def member_count(self, list_id: str, status: str | None = None) -> int:
        lst = self.list_state(list_id)
        return len(lst.index) if status is None else lst.counts[status]

    def is_forgotten(self, list_id: str, email_or_hash: str) -> bool:
        key = email_or_hash.strip()
        return (member_hash(key) if "@" in key else key.lower()) in self.list_state(list_id).tombstones

    # --- API entry point without HTTP ----------------------------------------
    def dispatch(self, method: str, path: str, query: dict | None = None, body=None):
        """Run one API call in-process (no auth, faults or connection limit);
        ``path`` is relative to /3.0.  Returns an :class:`~.api.ApiResponse`."""
        import orjson

        from civimc_sandbox.emulator.api import dispatch
        resp = dispatch(self, method, path, query or {}, body, self.base_url)
        if resp.fragments:
            resp.body, resp.fragments = orjson.loads(orjson.dumps(resp.body)), False
        return resp

    def clear_requests(self) -> None:
        self.requests.clear()

    # --- internals ------------------------------------------------------------
    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq - 1

    def _enter(self) -> int:
        with self._inflight_lock:
            self._inflight += 1
            if self._inflight > self.peak_inflight:
                self.peak_inflight = self._inflight
            return self._inflight

    def _leave(self) -> None:
        with self._inflight_lock:
            self._inflight -= 1


def _apply_admin(lst: ListState, rec: Record, extra: dict) -> None:
    for k, v in extra.items():
        if k in ("ip_opt", "ip_signup", "email_type", "language", "source"):
            setattr(rec, k, v or ("html" if k == "email_type" else ""))
        elif k == "vip":
            rec.vip = bool(v)
        elif k == "tags":
            now = rec.lc
            rec.tags = {t: now for t in v} if v else None
            for t in v or ():
                lst.tag_id(t)
        elif k == "interests":
            rec.interests = dict(v) if v else None
        elif k == "location":
            rec.location = dict(v) if v else None
        elif k == "unsubscribe_reason":
            rec.unsub_reason = v
        elif k == "prev_status":
            rec.prev_status = v
        elif k == "timestamp_opt":
            rec.ts_opt = parse_ts(v)
        elif k == "timestamp_signup":
            rec.ts_signup = parse_ts(v)
        elif k == "status":
            rec.status = v
        elif k == "marketing_permissions":
            rec.permissions = list(v) if v else None
        elif k == "activity":
            rec.activity = fixture_events(v)
        else:
            raise TypeError(f"unknown member field {k!r}")
