"""A complete snapshot of one Mailchimp audience (every member, every status) in the audit store.

Members are paged `count=1000` at a time with a `fields` list trimmed to the store's columns, up
to `max_connections` pages in flight. Paging by offset is not atomic, so completeness is checked
rather than assumed:

1. Pages overlap by one member, so a page boundary that moved between two page reads (members
   removed before it) is noticed rather than leaving a silent gap.
2. Members are keyed by `id` (md5 of the email); a member re-read later replaces its earlier
   copy (also across an email change, by `contact_id`); repeats from a shifted pass collapse.
3. Members changed while the snapshot ran are read again (`since_last_changed` from the server's
   clock at the start, newest first so further changes cause repeats, never gaps), in rounds
   until a round finds nothing new.
4. The result is counted against the audience's `total_items`. A wrong count or a moved
   boundary triggers one repair: an id-only pass finds exactly which members exist, the missing
   ones are fetched and the gone ones dropped. If the counts still disagree the snapshot is
   stored as `incomplete`, and reconcile refuses it.

Archived members are included: if the plain listing turns out not to contain them, they are read
with `status=archived` as well. An incremental snapshot starts from the previous complete one and
reads only members changed since it started (with a safety overlap), then checks completeness
the same way.

Parsing is the hot path of a million-member audience, so the page bodies of a full pass are not
decoded in Python at all: the text of each page's member array (`split_page`) is spooled as it
arrives to temporary JSON files that DuckDB parses straight into the snapshot's rows while
later pages still download (see Spool). Only the small re-reads are decoded with orjson;
members they found changed then replace their earlier copies in place.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import orjson
import pyarrow as pa
from tqdm.auto import tqdm

from civimc_audit.common.crashpoints import checkpoint
from civimc_audit.common.times import iso_utc, utcnow
from civimc_audit.config import MailchimpSettings
from civimc_audit.errors import MailchimpError
from civimc_audit.mailchimp.client import MailchimpClient
from civimc_audit.mailchimp.interests import read_catalogue
from civimc_audit.store import Snapshot, Store, scalar
from civimc_audit.store.loading import ChunkLoader, file_load, remove_files
from civimc_audit.store.lock import holds_lock

PAGE_SIZE = 1000
STRIDE = PAGE_SIZE - 1  # pages overlap by one member, see MemberPager.read
#: What the store keeps of a member, and so all a snapshot asks for: the rules need the status
#: and its time, the address and its id, contact_id to follow an email change, and the merge
#: fields to restore the audience from a backup, and the interests for the interest rules
#: (I1–I6). Nothing else about a person is kept.
MEMBER_FIELDS = ("id", "email_address", "status", "last_changed", "merge_fields", "contact_id",
                 "interests")
#: Re-read window before the server time a snapshot started at: Mailchimp's times have whole
#: seconds and `since_last_changed` is exclusive, so a change in the same second must be covered.
REREAD_OVERLAP = timedelta(seconds=2)
#: Incremental snapshots re-read this much before the previous snapshot started, for changes
#: Mailchimp records with a delay (imports, automations).
INCREMENTAL_OVERLAP = timedelta(minutes=10)
MAX_ROUNDS = 6
#: Connections loading a full pass's spool files, each statement on one DuckDB thread.
LOADERS = 2
#: Spool files (16 MB each) waiting for a loader before the page threads wait for DuckDB.
SPOOL_WAITING = 8
MAX_REPAIR_FETCHES = 2000
#: See _writing.
LOAD_UNCOMPRESSED = True

# A spool file is one JSON array of members as Mailchimp sent them (see split_page); DuckDB parses
# it into rows in store form.
_MEMBER_COLUMNS = ("{id: 'VARCHAR', email_address: 'VARCHAR', status: 'VARCHAR',"
                   " last_changed: 'VARCHAR', merge_fields: 'JSON', contact_id: 'VARCHAR',"
                   " interests: 'JSON'}")
_STORE_COLUMNS = "id, email_address, status, last_changed, merge_fields, contact_id, interests"


def _utc(column: str) -> str:
    """SQL turning one of Mailchimp's ISO 8601 times into a naive UTC TIMESTAMP.
    Mailchimp writes them in UTC as '2025-06-01T12:00:00+00:00'; those are cut and cast
    directly, any other offset goes through TIMESTAMPTZ. A text that is not a time is NULL:
    the row is kept, and the rules hold a member without a readable date back (cannot_sync
    no_member_change_date) rather than the snapshot failing on it."""
    return (f"CASE WHEN suffix({column}, '+00:00')"
            f" THEN TRY_CAST(left({column}, -6) AS TIMESTAMP)"
            f" ELSE CAST(TRY_CAST(NULLIF({column}, '') AS TIMESTAMPTZ) AS TIMESTAMP) END")


_FROM_SPOOL = f"""
SELECT coalesce(id, '') AS id, email_address, status, {_utc('last_changed')} AS last_changed,
       merge_fields,
       contact_id, interests
FROM read_json($path, format = 'array', maximum_object_size = 268435456,
               columns = {_MEMBER_COLUMNS})
"""
# A member Mailchimp sent without an id is kept with id '' (the rules hold it back, cannot_sync
# no_member_id); where rows are told apart by id, such members are told apart by address.
_KEY = "coalesce(nullif(id, ''), concat('@', email_address))"
# A full pass's rows go straight into the snapshot as each spool file loads (parsing overlaps
# the download), each loader inside one transaction: its appends fill whole row groups, which
# DuckDB compresses once, where separate commits would leave partial row groups to compress
# again. Rows decoded in Python (re-reads, repairs) wait in _mc_rows, tagged with their round.
_ROW_COLUMNS = ("id VARCHAR, email_address VARCHAR, status VARCHAR, last_changed TIMESTAMP,"
                " merge_fields VARCHAR, contact_id VARCHAR, interests VARCHAR")
_TABLES = (f"CREATE OR REPLACE TEMP TABLE _mc_rows (r INTEGER, {_ROW_COLUMNS})",)
# Rows of snapshot $snap, from what follows.
_INTO_SNAPSHOT = (f"INSERT INTO mailchimp_member (snapshot_id, {_STORE_COLUMNS})"
                  f" SELECT $snap, {_STORE_COLUMNS} FROM ")
_PASS_SQL = _INTO_SNAPSHOT + f"({_FROM_SPOOL})"
_LOAD_SQL = f"INSERT INTO _mc_rows SELECT $r, {_STORE_COLUMNS} FROM ({_FROM_SPOOL})"
# The newest copy of each re-read member, also across an email change (same contact_id).
_LATER_SQL = """
CREATE OR REPLACE TEMP TABLE _mc_later AS
WITH later_by_id AS (
    SELECT * FROM _mc_rows
    QUALIFY row_number() OVER (PARTITION BY """ + _KEY + """
                               ORDER BY r DESC, last_changed DESC NULLS LAST) = 1
)
SELECT * FROM later_by_id
QUALIFY row_number() OVER (PARTITION BY coalesce(contact_id, """ + _KEY + """)
                           ORDER BY r DESC, last_changed DESC NULLS LAST) = 1
"""
# The snapshot's rows start as the full pass's (or, for an incremental snapshot, the base
# snapshot's) and are brought up to date in place (_Snapshotter.assemble):
# - a shifted pass keeps one copy of each member, the newest;
_DEDUPE_SQL = """
DELETE FROM mailchimp_member WHERE snapshot_id = $snap AND rowid IN (
    SELECT rowid FROM mailchimp_member WHERE snapshot_id = $snap
    QUALIFY row_number() OVER (PARTITION BY """ + _KEY + """
                               ORDER BY last_changed DESC NULLS LAST) > 1)
"""
# - members re-read later replace their earlier copies (by id, or by contact_id across an email
#   change), and the copies an earlier assembly put in;
_REPLACE_SQL = (
    """
DELETE FROM mailchimp_member WHERE snapshot_id = $snap AND (
    """ + _KEY + """ IN (SELECT """ + _KEY + """ FROM _mc_later)
    OR coalesce(contact_id, """ + _KEY + """) IN (SELECT coalesce(contact_id, """ + _KEY + """)
                                                FROM _mc_later))
""",
    _INTO_SNAPSHOT + "_mc_later")
# - after an id-only pass (made after round $round), members read before it that it did not
#   find are gone.
_PRESENT_SQL = """
DELETE FROM mailchimp_member WHERE snapshot_id = $snap
    AND id NOT IN (SELECT id FROM _mc_present)
    AND id NOT IN (SELECT id FROM _mc_later WHERE r > $round)
"""
_BASE_SQL = _INTO_SNAPSHOT + "mailchimp_member WHERE snapshot_id = $base"
_TOTAL_RE = re.compile(rb'"total_items"\s*:\s*(\d+)')


def _iso(t: datetime) -> str:
    return iso_utc(t, offset=True)


@dataclass
class Read:
    """What one paged query saw."""

    total: int  # total_items of the first page
    server_time: datetime | None  # the server's clock at the first page
    totals: set[int]  # every total_items seen
    consistent: bool  # no page boundary shifted while reading


def boundaries_hold(edges: dict[int, tuple], offsets) -> bool:
    """Did the last member of each page come back first on the next? `edges` maps a page's
    offset to (its first id, its id at index STRIDE)."""
    return all(edges[o - STRIDE][1] is not None and edges[o - STRIDE][1] == edges[o][0]
               for o in offsets)


class MemberPager:
    """Reads `GET /lists/{id}/members` pages, up to the client's connection limit at once.

    Pages overlap by one member (offsets 0, 999, 1998, …): the last member of one page must be
    the first of the next. If members before a boundary were removed between the two reads,
    positions shifted and someone may have been skipped; the boundary check says so instead of
    the gap going unnoticed.
    """

    def __init__(self, client: MailchimpClient, list_id: str, bar=None):
        self.client = client
        self.path = f"/lists/{list_id}/members"
        self.bar = bar
        self.pages = 0
        self._lock = threading.Lock()

    def get(self, params: dict):
        resp = self.client.send("GET", self.path, params=params, check=whole_page)
        with self._lock:
            self.pages += 1
        return resp

    def pages_of(self, params: dict, fields: tuple[str, ...], on_page) -> tuple:
        """Fetch every page of a query, calling `on_page(offset, body bytes)` (from worker
        threads). Returns (total_items of the first page, its server time, later offsets)."""
        params = {**params, "count": PAGE_SIZE,
                  "fields": ",".join(["total_items"] + [f"members.{f}" for f in fields])}
        resp = self.get({**params, "offset": 0})
        m = _TOTAL_RE.search(resp.content)
        total = int(m.group(1)) if m else 0
        if self.bar is not None and self.bar.total is None:
            self.bar.total = total
            self.bar.refresh()
        on_page(0, resp.content)
        self._progress(0, total)
        offsets = range(STRIDE, total - 1, STRIDE)

        def one(offset: int) -> None:
            on_page(offset, self.get({**params, "offset": offset}).content)
            self._progress(offset, total)

        if offsets:
            with ThreadPoolExecutor(self.client.max_connections,
                                    thread_name_prefix="mailchimp-page") as pool:
                futures = [pool.submit(one, o) for o in offsets]
                try:
                    done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                finally:  # also on Ctrl-C: the pages not yet asked for are not asked for
                    for f in futures:
                        f.cancel()
                for f in done:
                    f.result()  # re-raises the first failure
        return total, self.client.server_time(resp), offsets

    def _progress(self, offset: int, total: int) -> None:
        if self.bar is not None:
            self.bar.update(max(0, min(PAGE_SIZE, total - offset) - (1 if offset else 0)))

    def read(self, params: dict, fields: tuple[str, ...], keep) -> Read:
        """Read every page decoded in Python, calling `keep(members)` for each, one at a time
        (for small reads; full passes spool the raw pages instead)."""
        lock = threading.Lock()
        edges: dict[int, tuple] = {}
        totals: set[int] = set()

        def on_page(offset: int, content: bytes) -> None:
            doc = orjson.loads(content)
            ms = doc.get("members") or []
            with lock:
                totals.add(int(doc.get("total_items") or 0))
                edges[offset] = (ms[0].get("id") if ms else None,
                                 ms[STRIDE].get("id") if len(ms) > STRIDE else None)
                keep(ms[1:] if offset else ms)

        total, when, offsets = self.pages_of(params, fields, on_page)
        return Read(total, when, totals, boundaries_hold(edges, offsets))

    def count(self, **params) -> int:
        resp = self.get({**params, "count": 1, "fields": "total_items"})
        return int(orjson.loads(resp.content).get("total_items") or 0)


def member_key(member: dict) -> str:
    """A decoded member's id, or for one Mailchimp sent without an id, its address marked so
    that it cannot be taken for one (the SQL's _KEY)."""
    return member.get("id") or f"@{member.get('email_address')}"


def read_changed(client: MailchimpClient, list_id: str, since: str,
                 fields: tuple[str, ...] = MEMBER_FIELDS,
                 archived_separately: bool = False) -> dict[str, dict]:
    """Every member changed after `since` (ISO 8601), by id, archived ones included."""
    pager = MemberPager(client, list_id)
    out: dict[str, dict] = {}

    def keep(members):
        for m in members:
            out[member_key(m)] = m

    params = {"since_last_changed": since, "sort_field": "last_changed", "sort_dir": "DESC"}
    pager.read(params, fields, keep)
    if archived_separately:
        pager.read({**params, "status": "archived"}, fields, keep)
    return out


class Spool:
    """Members on their way to DuckDB, written by the page threads.

    Each file is one JSON array of the members of pages adding up to `file_bytes` (about 57
    pages). Full files go to a ChunkLoader with one worker per connection in `cons`, which has
    DuckDB run `sql` over them (parse, convert, insert) while later pages still download
    (DuckDB releases the GIL). A load takes every file waiting at that moment, so a backlog (the
    download outran DuckDB) is taken in one statement; once `max_waiting` files wait, the page
    threads wait for DuckDB. Each connection loads inside its own transaction, committed by
    `close()` or rolled back (see ChunkLoader); the connections are the loaders' until then. As
    a context manager, it closes with `load=False` when its block raised.
    """

    def __init__(self, folder: str, query: int, cons: list, sql: str, params: dict,
                 file_bytes: int = 16 << 20, max_waiting: int = SPOOL_WAITING):
        self.folder, self.query = folder, query
        self.sql, self.params = sql, params
        self.file_bytes = file_bytes
        self._lock = threading.Lock()
        self._files = 0
        self._file: io.BufferedWriter | None = None
        self._in_file = 0
        self.loader = ChunkLoader(cons, file_load(sql, params), max_waiting=max_waiting,
                                  batch=True, discard=remove_files, name="mailchimp-load")

    @property
    def rows(self) -> int:
        """Rows the loads inserted."""
        return self.loader.rows

    def write(self, members: bytes) -> None:
        """Add one page's members (comma-separated objects, see `split_page`)."""
        if not members:
            return
        with self._lock:
            if self._file is None:
                self._files += 1
                path = os.path.join(self.folder, f"members-{self.query}-{self._files}.json")
                self._file = open(path, "wb")  # noqa: SIM115 - closed by _finish_file
                self._file.write(b"[")
            else:
                self._file.write(b",")
            self._file.write(members)
            self._in_file += len(members)
            if self._in_file >= self.file_bytes:
                self.loader.put(self._finish_file())

    def _finish_file(self) -> str:
        f, self._file, self._in_file = self._file, None, 0
        assert f is not None, "called only with a file open"
        f.write(b"]")
        f.close()
        return f.name

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(load=exc_type is None)

    def close(self, load: bool = True) -> None:
        """Load what is left, wait for every load and commit; with `load=False` (or when a
        load failed, or Ctrl-C) stop the loads and roll back instead (see ChunkLoader.close)."""
        with self._lock:
            last = self._finish_file() if self._file is not None else None
        try:
            if last is not None:
                if load:
                    self.loader.put(last)
                else:
                    remove_files([last])
        except BaseException:
            load = False
            raise
        finally:
            self.loader.close(load=load)


@dataclass
class Page:
    """One raw member page, cut down to its members."""

    total: int  # its total_items
    first: str | None  # id of its first member
    at_stride: str | None  # id of its member at index STRIDE (the next page's first)
    n: int  # members on it (for a page cut before the last: PAGE_SIZE, see split_page)
    members: bytes  # its member objects, comma-separated, a later page's overlap left out


# The page as Mailchimp sends it for `fields=total_items,members.…`: compact JSON, the count
# before or after the member array.
_ENVELOPE = re.compile(rb'\A\{(?:"total_items":(\d+),)?"members":\[(.*)\](?:,"total_items":(\d+))?\}\Z',
                       re.S)
_MEMBER_START = b'{"id":"'
_BOUNDARY = b'},{"id":"'


def whole_page(content: bytes) -> None:
    """Raise ValueError unless `content` is a whole page: the compact layout split_page cuts,
    or JSON at all (a 200 whose body was cut short or garbled is retried, see client.send)."""
    if not _ENVELOPE.match(content):
        orjson.loads(content)


def split_page(content: bytes, offset: int) -> Page:
    """Cut the members out of a raw page without decoding it in Python.

    Mailchimp sends compact JSON with each member's `id` first, so consecutive members are
    separated by exactly `},{"id":"`, which cannot occur anywhere else in the trimmed members:
    inside a string every `"` is escaped, and no nested object is in an array. So when the page
    is exactly `{"members":[…],"total_items":N}` (either order) and its array starts with
    `{"id":"`, the array's text between its brackets is kept as it is: the first member of a
    page after the first (offset > 0) is the overlap with the page before (see MemberPager) and
    is cut off at the first boundary, and the page's last member is the one at index STRIDE.

    Counting a page's members would cost as much as the rest of the cut, so a page before the
    last (offset + PAGE_SIZE <= total) is taken to hold PAGE_SIZE members; the caller checks
    that the rows DuckDB loads add up (one short page, or a later member whose id is not its
    first key, makes them fall short). The last page is counted, and cut only if `"id"` occurs
    once per member. Any other page (whitespace, keys in another order, more after the array, a
    cut-off body) is decoded and re-encoded instead, or fails to decode.
    """
    m = _ENVELOPE.match(content)
    if m and (m.group(1) is None) != (m.group(3) is None):
        total = int(m.group(1) or m.group(3))
        seg = m.group(2)
        if not seg:
            return Page(total, None, None, 0, b"")
        page = _cut(seg, total, offset)
        if page is not None:
            return page
    doc = orjson.loads(content)
    ms = doc.get("members") or []
    return Page(int(doc.get("total_items") or 0), ms[0].get("id") if ms else None,
                ms[STRIDE].get("id") if len(ms) > STRIDE else None, len(ms),
                member_text(ms[1:] if offset else ms))


def _cut(seg: bytes, total: int, offset: int) -> Page | None:
    """split_page's cut of a compact member array `seg`, or None if its layout does not allow
    one (the page is then decoded)."""
    if not (seg.startswith(_MEMBER_START) and seg.endswith(b"}")):
        return None
    if offset + PAGE_SIZE <= total:
        n = PAGE_SIZE
    else:
        n = seg.count(_BOUNDARY) + 1
        if seg.count(b'"id"') != n:
            return None
    members = seg
    if offset:
        cut = seg.find(_BOUNDARY)
        if cut < 0:
            return None
        members = seg[cut + 2:]
    k = len(_MEMBER_START)
    first = seg[k:seg.index(b'"', k)].decode()
    at_stride = None
    if n > STRIDE:
        i = seg.rfind(_MEMBER_START)
        at_stride = seg[i + k:seg.index(b'"', i + k)].decode()
    return Page(total, first, at_stride, n, members)


def member_text(members: list[dict]) -> bytes:
    """Decoded members as spool text (comma-separated objects)."""
    return orjson.dumps(members)[1:-1]


@contextmanager
def _settings(con, **values):
    """DuckDB settings changed for a block, restored after."""
    old = dict(con.execute("SELECT name, value FROM duckdb_settings() WHERE name IN"
                           " (SELECT unnest($names))", {"names": list(values)}).fetchall())
    for name, value in values.items():
        con.execute(f"SET {name} = $v", {"v": value})
    try:
        yield
    finally:
        for name, value in old.items():
            con.execute(f"SET {name} = $v", {"v": value})


def _loading(con):
    """DuckDB set for a full pass's loads, restored after: each statement on one thread (the
    loads run beside the download, on a machine already busy with it, and threads sharing an
    INSERT each leave a partly filled row group that the next checkpoint compresses again),
    each row group written out as soon as it is full, rather than five at a time, so the
    commit after the download has one left to write, and the member rows stored as they are
    (see _writing)."""
    return _settings(con, threads=1, write_buffer_row_group_count=1, **_writing())


def _writing() -> dict:
    """Member rows are written without dictionary/FSST string compression: analysing and
    compressing a million unique ids, addresses and merge fields costs the snapshot more CPU
    than parsing them (about 2 us a member, the difference between keeping up with the
    download or not), for a store about 2.5 times larger per member row (~190 MB per million
    members instead of ~70 MB)."""
    return {"disabled_compression_methods": "dict_fsst"} if LOAD_UNCOMPRESSED else {}


class _Snapshotter:
    """The state of one snapshot run (see the module docstring for the method)."""

    def __init__(self, client: MailchimpClient, store: Store, list_id: str, snap_id: int,
                 progress: bool):
        self.snap_id = snap_id
        self.client = client
        self.store = store
        self.con = store.con
        self.list_id = list_id
        self.bar = tqdm(desc="Mailchimp members", unit=" members", disable=not progress)
        self.pager = MemberPager(client, list_id, self.bar)  # the full pass
        self.small = MemberPager(client, list_id)  # re-reads, counts, repairs
        self.tmp = tempfile.TemporaryDirectory(prefix="civimc-mailchimp-")
        # id -> the member as last re-read. Whole members are compared, not last_changed: two
        # changes within one second share a last_changed.
        self.seen: dict[str, dict] = {}
        self.archived_separately = False
        self.rounds = 0
        self.repaired = False
        self.shifted = False  # a page boundary moved during the full pass
        self.deduped = False
        self.present: set[str] | None = None
        self.present_round = 0
        self.queries = 0  # spooled queries so far (numbers the spool files)
        self.rows_read = 0
        self.trusted_total: int | None = None  # the full pass's total, while nothing changed
        # time per phase, kept in the snapshot's meta
        self.seconds: defaultdict[str, float] = defaultdict(float)
        for sql in _TABLES:
            self.con.execute(sql)

    @contextmanager
    def phase(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t

    def _spool(self, cons: list, sql: str, **params) -> Spool:
        self.queries += 1
        return Spool(self.tmp.name, self.queries, cons, sql, params)

    def _count(self, where: str) -> int:
        return scalar(self.con, f"SELECT count(*) FROM mailchimp_member WHERE snapshot_id = $snap"
                      f" AND {where}", {"snap": self.snap_id})

    # --- reading ---------------------------------------------------------------------------
    def _full_read(self, params: dict) -> Read:
        """Every page of a listing, spooled into the snapshot's rows (see Spool.close)."""
        spool: Spool
        edges: dict[int, tuple] = {}
        totals: set[int] = set()
        lock = threading.Lock()
        rows = 0

        def on_page(offset: int, content: bytes) -> None:
            nonlocal rows
            page = split_page(content, offset)
            with lock:
                totals.add(page.total)
                edges[offset] = (page.first, page.at_stride)
                rows += page.n - (1 if offset and page.n else 0)
            spool.write(page.members)

        with _loading(self.con), contextlib.ExitStack() as stack:
            cons = [self.con.cursor() for _ in range(LOADERS)]
            for con in cons:
                stack.callback(con.close)
            spool = stack.enter_context(self._spool(cons, _PASS_SQL, snap=self.snap_id))
            with self.phase("download"):
                total, when, offsets = self.pager.pages_of(params, MEMBER_FIELDS, on_page)
            finished = time.perf_counter()
        # What DuckDB had left once the last page was in: the last loads and the commits.
        self.seconds["parse+store"] += time.perf_counter() - finished
        self.rows_read += spool.rows
        # Fewer rows than the pages were taken to hold: a page was short or cut wrongly (see
        # split_page), so the pass is treated like a shifted one and checked member by member.
        return Read(total, when, totals,
                    spool.rows == rows and boundaries_hold(edges, offsets))

    def full_pass(self) -> int | None:
        """Every page of the plain listing (+ archived if it leaves them out). Returns the
        total, or None if the audience changed size or shifted while it was read."""
        self.bar.reset(total=None)
        r = self._full_read({})
        checkpoint("mailchimp_loading")  # the pass's rows are committed, the snapshot running
        total, consistent = r.total, r.consistent and len(r.totals) == 1
        self.shifted = not r.consistent
        has_archived = self._count("status = 'archived'") > 0
        archived = 0 if has_archived else self.small.count(status="archived")
        if archived:
            self.archived_separately = True
            if self.bar.total is not None:
                self.bar.total += archived
            a = self._full_read({"status": "archived"})
            total += a.total
            consistent = consistent and a.consistent and len(a.totals) == 1
            self.shifted |= not a.consistent
        # A member served twice (unstable paging, or a long page making up for a short one in
        # the row count) means another may be missing: checked member by member, as a shift.
        if not self.shifted and scalar(
                self.con, "SELECT count(*) <> count(DISTINCT id) FROM mailchimp_member"
                " WHERE snapshot_id = $snap", {"snap": self.snap_id}):
            self.shifted, consistent = True, False
        return total if consistent else None

    def add(self, members: list[dict], rnd: int) -> None:
        """Members decoded in Python (re-reads, repairs) wait in _mc_rows."""
        if members:
            self.rows_read += len(members)
            with self._spool([self.con], _LOAD_SQL, r=rnd) as spool:  # _mc_rows is con's own
                spool.write(member_text(members))

    def begin(self, base: Snapshot | None, started: datetime) -> datetime:
        """The full pass, or for an incremental snapshot a copy of its base snapshot's rows;
        returns the time re-reads start from."""
        if base is None:
            self.trusted_total = self.full_pass()
            return started - REREAD_OVERLAP
        self.archived_separately = bool(base.meta.get("archived_listed_separately"))
        self.trusted_total = None
        self.start_from(base.id)
        return datetime.fromisoformat(base.meta["server_started_at"]) - INCREMENTAL_OVERLAP

    def settle(self, since: datetime) -> tuple[bool, datetime]:
        """Re-read changes in rounds until one brings nothing new; returns whether one did
        and the time the next re-read would start from."""
        for _ in range(MAX_ROUNDS):
            fresh, when, consistent = self.changed_round(since, self.rounds + 1)
            if not consistent:  # the read shifted: read the same window again
                self.trusted_total = None
                continue
            since = when - REREAD_OVERLAP
            if not fresh:
                return True, since
            self.trusted_total = None  # members may have come or gone: count again
        return False, since

    def changed_round(self, since: datetime, rnd: int) -> tuple[int, datetime, bool]:
        """Re-read members changed after `since`; returns (members not seen before, server
        time of the round, whether the read was consistent)."""
        with self.phase("reread"):
            return self._changed_round(since, rnd)

    def _changed_round(self, since: datetime, rnd: int) -> tuple[int, datetime, bool]:
        fresh: list[dict] = []

        def keep(members):
            for m in members:
                if self.seen.get(member_key(m)) != m:
                    self.seen[member_key(m)] = m
                    fresh.append(m)

        params = {"since_last_changed": _iso(since), "sort_field": "last_changed",
                  "sort_dir": "DESC"}
        r = self.small.read(params, MEMBER_FIELDS, keep)
        consistent = r.consistent
        if self.archived_separately:
            consistent &= self.small.read({**params, "status": "archived"}, MEMBER_FIELDS,
                                          keep).consistent
        self.add(fresh, rnd)
        self.rounds = rnd
        # A shifted read may have skipped a changed member: the caller reads the window again.
        return len(fresh), r.server_time or utcnow(), consistent

    def audience_total(self) -> int:
        n = self.small.count()
        if self.archived_separately:
            n += self.small.count(status="archived")
        return n

    def repair(self) -> None:
        """Find exactly which members exist (an id-only pass) and fetch the ones missing."""
        with self.phase("repair"):
            self._repair()

    def _repair(self) -> None:
        self.repaired = True
        for _ in range(3):
            present: set[str] = set()

            def keep(members, present=present):
                present.update(m.get("id") or "" for m in members)

            ok = self.small.read({}, ("id",), keep).consistent
            if self.archived_separately:
                ok &= self.small.read({"status": "archived"}, ("id",), keep).consistent
            if ok:
                break
        held = set(self.con.execute(
            "SELECT id FROM mailchimp_member WHERE snapshot_id = ?"  # the assembled rows
            " UNION SELECT id FROM _mc_rows", [self.snap_id]).fetchnumpy()["id"].tolist())
        missing = sorted(present - held)[:MAX_REPAIR_FETCHES]
        fetched = []
        fields = ",".join(MEMBER_FIELDS)
        for h in missing:
            try:
                fetched.append(self.client.get(f"/lists/{self.list_id}/members/{h}", fields=fields))
            except MailchimpError as exc:
                if exc.status != 404:
                    raise
        self.rounds += 1
        self.add(fetched, self.rounds)
        self.present, self.present_round = present, self.rounds

    # --- assembling ------------------------------------------------------------------------
    def start_from(self, base_id: int) -> None:
        """An incremental snapshot's rows start as a copy of its base snapshot's."""
        with (self.phase("store"), _settings(self.con, **_writing()),
              self.store.transaction()):
            self.con.execute(_BASE_SQL, {"snap": self.snap_id, "base": base_id})

    def assemble(self) -> int:
        """Bring the snapshot's member rows up to date with everything read (again after a
        repair: each step can be repeated); returns their number."""
        with self.phase("store"):
            return self._assemble()

    def _assemble(self) -> int:
        con = self.con
        snap = {"snap": self.snap_id}
        con.execute(_LATER_SQL)
        (later,), = con.execute("SELECT count(*) FROM _mc_later").fetchall()
        if self.present is not None:
            con.register("_mc_present", pa.table({"id": pa.array(sorted(self.present),
                                                                   pa.string())}))
        try:
            dedupe = self.shifted and not self.deduped
            with self.store.transaction():
                if dedupe:
                    con.execute(_DEDUPE_SQL, snap)
                if later:
                    for sql in _REPLACE_SQL:
                        con.execute(sql, snap)
                if self.present is not None:
                    con.execute(_PRESENT_SQL, {**snap, "round": self.present_round})
        finally:
            if self.present is not None:
                con.unregister("_mc_present")
        self.deduped |= dedupe
        return self._count("true")

    def close(self) -> None:
        self.bar.close()
        for t in ("_mc_rows", "_mc_later"):
            self.con.execute(f"DROP TABLE IF EXISTS {t}")
        self.tmp.cleanup()


def _base_snapshot(store: Store, list_id: str) -> Snapshot | None:
    """The latest complete snapshot of this audience that an incremental one can build on."""
    rows = store.con.execute(
        "SELECT id FROM snapshots WHERE source = 'mailchimp' AND status = 'complete'"
        " ORDER BY taken_at DESC, id DESC").fetchall()
    for (sid,) in rows:
        snap = store.snapshot(sid)
        if snap.meta.get("list_id") == list_id and snap.meta.get("server_started_at"):
            return snap
    return None


def snapshot_mailchimp(settings: MailchimpSettings, store: Store, progress: bool = False,
                       client: MailchimpClient | None = None,
                       incremental: bool = False) -> Snapshot:
    """Read the whole audience (or, with `incremental`, what changed since the previous
    complete snapshot) into a new snapshot; `incomplete` if completeness cannot be shown."""
    own = client is None
    client = client or MailchimpClient(settings)
    requests_before = client.stats["requests"]
    try:
        info, resp = client.get_list_response(settings.list_id)
        started = client.server_time(resp) or utcnow()
        base = _base_snapshot(store, settings.list_id) if incremental else None
        meta = {"list_id": settings.list_id, "list_name": info.get("name"),
                "server_started_at": started.isoformat(),
                "mode": "incremental" if base else "full",
                "base_snapshot_id": base.id if base else None}
        snap_id = store.begin_snapshot("mailchimp", meta, abandon_running=holds_lock(store.path))
        run = _Snapshotter(client, store, settings.list_id, snap_id, progress)
        try:
            return _run(run, store, snap_id, info, started, base, settings, client,
                        requests_before)
        except BaseException as exc:  # nothing half-read is ever left looking usable
            store.fail_snapshot(snap_id, str(exc) or type(exc).__name__)
            raise
        finally:
            run.close()
    finally:
        if own:
            client.close()


def _run(run: _Snapshotter, store: Store, snap_id: int, info: dict, started: datetime,
         base: Snapshot | None, settings: MailchimpSettings, client: MailchimpClient,
         requests_before: int) -> Snapshot:
    settled, n, total = _read_until_counted(run, run.begin(base, started))
    complete = settled and n == total
    if not settled:
        message = f"members kept changing through {MAX_ROUNDS} re-reads; take it again later"
    elif not complete:
        message = (f"read {n} members but the audience reports {total} (members were deleted "
                   "or moved while the snapshot ran)")
    else:
        message = None
    catalogue = read_catalogue(client, settings.list_id)
    # Plain inserts of a row or a few: an Arrow table here would import pandas (pyarrow looks
    # for it), a second of an incremental snapshot's start-up.
    with store.transaction() as con:
        con.execute("INSERT INTO mailchimp_list (snapshot_id, id, name, member_count,"
                    " total_items) VALUES (?, ?, ?, ?, ?)",
                    [snap_id, settings.list_id, info.get("name"),
                     (info.get("stats") or {}).get("member_count"), total])
        if catalogue:
            con.executemany("INSERT INTO mailchimp_interest (snapshot_id, category_id,"
                            " category_title, id, name) VALUES (?, ?, ?, ?, ?)",
                            [[snap_id, c["category_id"], c["category_title"], c["interest_id"],
                              c["interest_name"]] for c in catalogue])
    meta: dict = {"archived_listed_separately": run.archived_separately, "shifted": run.shifted,
            "rounds": run.rounds, "repaired": run.repaired,
            "rows_read": run.rows_read, "total_items": total,
            "requests": client.stats["requests"] - requests_before,
            "page_requests": run.pager.pages + run.small.pages,
            "seconds": {k: round(v, 3) for k, v in run.seconds.items()}}
    odd = odd_members(store, snap_id)
    if odd:
        meta["odd_members"] = odd
    return store.finish_snapshot(snap_id, complete=complete, meta=meta, message=message)


#: Statuses the API documents for a member; any other is kept as sent and counted as odd.
KNOWN_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional",
                  "archived")
_ODD_SQL = f"""
SELECT count(*) FILTER (WHERE last_changed IS NULL),
       count(*) FILTER (WHERE status IS NULL OR status NOT IN
                        ({", ".join(f"'{s}'" for s in KNOWN_STATUSES)})),
       count(*) FILTER (WHERE email_address IS NULL OR trim(email_address) = ''),
       count(*) FILTER (WHERE id = '')
FROM mailchimp_member WHERE snapshot_id = ?
"""
ODD_WORDS = ("without a usable last_changed", "with an unknown status", "without an address",
             "without an id")


def odd_members(store: Store, snap_id: int) -> dict[str, int]:
    """How many of the snapshot's members Mailchimp sent broken, in words (none: empty). They
    are stored as sent; the rules say they cannot be synced, and `snapshot` says how many."""
    row = store.con.execute(_ODD_SQL, [snap_id]).fetchone() or ()
    return {words: int(n) for words, n in zip(ODD_WORDS, row, strict=True) if n}


def _read_until_counted(run: _Snapshotter, since: datetime) -> tuple[bool, int, int | None]:
    """Re-read changes until they settle and count the assembled rows against the audience,
    repairing once if they disagree (or the full pass shifted); returns (settled, rows, the
    audience's total)."""
    total = None
    settled, since = run.settle(since)
    n = run.assemble()
    if settled:
        total = run.trusted_total if run.trusted_total is not None else run.audience_total()
        # A shifted full pass may hide a skipped member behind a deleted one in the count.
        if n != total or run.shifted:
            run.repair()
            settled, since = run.settle(since)
            n = run.assemble()
            if settled:
                total = run.audience_total()
    return settled, n, total
