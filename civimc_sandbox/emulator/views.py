"""Filtered/sorted views of a list's members, cached across pages.

A snapshot pages through ``GET /members`` a thousand at a time; scanning or
sorting a million records per page would make that quadratic.  A view is
built once per distinct query and reused while the list's mutation counter
(``version``) is unchanged.  When a few members change mid-snapshot (the
``on_members_page`` hook does exactly that) the view is patched from the
list's change log instead of rebuilt: each change entry carries a copy of the
member as it was before the write, so its old position is found by bisection.

The unfiltered, insertion-ordered view is the list's own ``order`` list and is
never copied.  A ``since_last_changed`` query (every completeness re-read makes
one, with a new time each) starts from the view of all members by
``last_changed``, kept like any other, and bisects it: it touches only the
members changed after that time instead of scanning the whole list.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from typing import NamedTuple

from civimc_sandbox.emulator.records import Record

_SHIFT = 32  # sort keys pack (timestamp, seq) into one int: smaller than tuples
_PATCH_LIMIT = 256


class Query(NamedTuple):
    """The parts of a members query that select and order members (not paging)."""

    status: str | None = None
    since_lc: float | None = None
    before_lc: float | None = None
    since_opt: float | None = None
    before_opt: float | None = None
    email_type: str | None = None
    vip_only: bool = False
    unique_email_id: str | None = None
    sort_field: str | None = None
    desc: bool = False
    hide_archived: bool = False

    @property
    def trivial(self) -> bool:
        return self == _TRIVIAL


_TRIVIAL = Query()


def _matcher(q: Query):
    tests = []
    if q.status is not None:
        s = q.status
        tests.append(lambda r: r.status == s)
    # "after"/"before" the given time: strict comparisons (see emulator docs).
    if q.since_lc is not None:
        t1 = q.since_lc
        tests.append(lambda r: r.lc > t1)
    if q.before_lc is not None:
        t2 = q.before_lc
        tests.append(lambda r: r.lc < t2)
    if q.since_opt is not None:
        t3 = q.since_opt
        tests.append(lambda r: r.ts_opt is not None and r.ts_opt > t3)
    if q.before_opt is not None:
        t4 = q.before_opt
        tests.append(lambda r: r.ts_opt is not None and r.ts_opt < t4)
    if q.email_type is not None:
        et = q.email_type
        tests.append(lambda r: r.email_type == et)
    if q.vip_only:
        tests.append(lambda r: r.vip)
    if q.hide_archived:
        tests.append(lambda r: r.status != "archived")
    if q.unique_email_id is not None:
        from civimc_sandbox.emulator.render import unique_email_id
        uid = q.unique_email_id
        tests.append(lambda r: unique_email_id(r.email) == uid)
    if not tests:
        return lambda r: True
    if len(tests) == 1:
        return tests[0]
    return lambda r: all(t(r) for t in tests)


def _keyfn(q: Query):
    f = q.sort_field
    if f == "last_changed":
        def k(r):
            return (r.lc << _SHIFT) + r.seq
    elif f == "timestamp_opt":
        def k(r):
            return ((r.ts_opt if r.ts_opt is not None else -1) << _SHIFT) + r.seq
    elif f == "timestamp_signup":
        def k(r):
            return ((r.ts_signup if r.ts_signup is not None else -1) << _SHIFT) + r.seq
    else:
        def k(r):
            return r.seq
    if q.desc and f:
        return lambda r: -k(r)
    return k


_BY_LAST_CHANGED = Query(sort_field="last_changed")


class _View:
    __slots__ = ("version", "recs", "keys", "match", "key", "sort", "since_lc")

    def __init__(self, q: Query):
        self.version = -1
        self.since_lc = q.since_lc
        self.sort = q.sort_field is not None or q.since_lc is not None
        self.recs: list[Record] = []
        self.keys: list[int] = []
        self.match = _matcher(q)
        self.key = _keyfn(q)


class ViewCache:
    """Per-list cache of views, keyed by :class:`Query`; a handful are kept (LRU)."""

    def __init__(self, max_views: int = 12):
        self.max_views = max_views
        self._views: dict[Query, _View] = {}
        self.rebuilds = 0  # exposed for tests/benchmarks
        self.patches = 0

    def clear(self) -> None:
        self._views.clear()

    def get(self, lst, q: Query) -> list[Record]:
        """Members of ``lst`` matching ``q`` in order (caller holds the emulator lock)."""
        if q.trivial:
            return lst.order
        v = self._views.pop(q, None)
        if v is None:
            v = _View(q)
        self._views[q] = v  # most recently used last
        while len(self._views) > self.max_views:
            self._views.pop(next(iter(self._views)))
        if v.version != lst.version:
            changed = lst.changes_since(v.version) if v.version >= 0 else None
            if changed is None or len(changed) > _PATCH_LIMIT:
                self._rebuild(v, lst)
            else:
                self._patch(v, lst, changed)
            v.version = lst.version
        return v.recs

    def _rebuild(self, v: _View, lst) -> None:
        self.rebuilds += 1
        match, key = v.match, v.key
        recs = [r for r in self._candidates(lst, v.since_lc) if match(r)]
        keys = [key(r) for r in recs]
        if v.sort:  # insertion order needs no sort: ``order`` is kept by seq
            idx = sorted(range(len(keys)), key=keys.__getitem__)
            recs = [recs[i] for i in idx]
            keys = [keys[i] for i in idx]
        v.recs, v.keys = recs, keys

    def _candidates(self, lst, since_lc: float | None) -> list[Record]:
        """Members that can match a query: all of them, or for one with a
        ``since_last_changed`` time, those changed after it (``lc`` holds whole
        seconds and the comparison is strict)."""
        if since_lc is None:
            return lst.order
        by_lc = self.get(lst, _BY_LAST_CHANGED)
        keys = self._views[_BY_LAST_CHANGED].keys
        return by_lc[bisect_left(keys, (math.floor(since_lc) + 1) << _SHIFT):]

    def _patch(self, v: _View, lst, changed: dict) -> None:
        """``changed`` maps each member changed since the view's version to a copy of
        it as the view saw it (``None`` if it did not exist then)."""
        self.patches += 1
        recs, keys, match, key = v.recs, v.keys, v.match, v.key
        for rec, before in changed.items():
            if before is not None and match(before):
                k = key(before)
                i = bisect_left(keys, k)
                if i < len(keys) and recs[i] is rec:
                    del recs[i]
                    del keys[i]
                else:  # should not happen; stay correct anyway
                    try:
                        i = recs.index(rec)
                    except ValueError:
                        i = -1
                    if i >= 0:
                        del recs[i]
                        del keys[i]
        for rec in changed:
            if lst.index.get(rec.id) is rec and match(rec):
                k = key(rec)
                i = bisect_left(keys, k)
                recs.insert(i, rec)
                keys.insert(i, k)
