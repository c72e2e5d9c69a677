"""A complete snapshot of one Mailchimp audience (every member, every status) in the audit store.

Members are paged `count=1000` at a time with a `fields` list trimmed to the store's columns, up
to `max_connections` pages in flight. Paging by offset is not atomic, so completeness is checked
rather than assumed:

1. Members are keyed by `id` (md5 of the email); repeats from shifting offsets collapse, and a
   member re-read later replaces its earlier copy (also across an email change, by `contact_id`).
2. Members changed while the snapshot ran are read again (`since_last_changed` from the server's
   clock at the start, newest first so further changes cause repeats, never gaps), in rounds
   until a round finds nothing new.
3. The result is counted against the audience's `total_items`. A mismatch (members permanently
   deleted or skipped when offsets shifted) triggers one repair: an id-only pass finds exactly
   which members exist. If the counts still disagree the snapshot is stored as `incomplete`, and
   reconcile refuses it.

Archived members are included: if the plain listing turns out not to contain them, they are read
with `status=archived` as well. An incremental snapshot starts from the previous complete one and
reads only members changed since it started (with a safety overlap), then checks completeness
the same way.

Page parsing is the hot path of a million-member audience: pages are decoded with orjson into
plain columns, and timestamps, names and de-duplication are done in bulk by DuckDB.
"""

from __future__ import annotations

import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
import pyarrow as pa
from tqdm.auto import tqdm

from ..config import MailchimpSettings
from ..errors import MailchimpError
from ..store import Snapshot, Store, utcnow
from .client import MailchimpClient

PAGE_SIZE = 1000
STRIDE = PAGE_SIZE - 1  # pages overlap by one member, see MemberPager.read
MEMBER_FIELDS = ("id", "email_address", "status", "last_changed", "merge_fields",
                 "unique_email_id", "contact_id", "timestamp_opt")
#: Re-read window before the server time a snapshot started at: Mailchimp's times have whole
#: seconds and `since_last_changed` is exclusive, so a change in the same second must be covered.
REREAD_OVERLAP = timedelta(seconds=2)
#: Incremental snapshots re-read this much before the previous snapshot started, for changes
#: Mailchimp records with a delay (imports, automations).
INCREMENTAL_OVERLAP = timedelta(minutes=10)
MAX_ROUNDS = 6
MAX_REPAIR_FETCHES = 2000
_STORE_COLUMNS = ("id, email_address, status, last_changed, fname, lname, merge_fields, "
                  "unique_email_id, contact_id, timestamp_opt")

_STRING_COLUMNS = ("id", "email_address", "status", "last_changed", "unique_email_id",
                   "contact_id", "timestamp_opt")
_ARROW_SCHEMA = pa.schema([(c, pa.string()) for c in _STRING_COLUMNS]
                          + [("merge_fields", pa.string()), ("rnd", pa.int32())])
# API form (strings) -> store form, keeping only the newest copy of each member.
_ASSEMBLE_SQL = """
WITH staged AS (
    SELECT id, email_address, status,
           CAST(CAST(NULLIF(last_changed, '') AS TIMESTAMPTZ) AS TIMESTAMP) AS last_changed,
           NULLIF(json_extract_string(merge_fields, '$.FNAME'), '') AS fname,
           NULLIF(json_extract_string(merge_fields, '$.LNAME'), '') AS lname,
           CAST(merge_fields AS JSON) AS merge_fields,
           unique_email_id, contact_id,
           CAST(CAST(NULLIF(timestamp_opt, '') AS TIMESTAMPTZ) AS TIMESTAMP) AS timestamp_opt,
           rnd
    FROM {staged}
    {base}
), by_id AS (
    SELECT * FROM staged
    QUALIFY row_number() OVER (PARTITION BY id ORDER BY rnd DESC, last_changed DESC NULLS LAST) = 1
)
SELECT * FROM by_id
QUALIFY row_number() OVER (PARTITION BY coalesce(contact_id, id)
                           ORDER BY rnd DESC, last_changed DESC NULLS LAST) = 1
"""
_BASE_SQL = """
    UNION ALL
    SELECT id, email_address, status, last_changed, fname, lname, merge_fields,
           unique_email_id, contact_id, timestamp_opt, -1 AS rnd
    FROM mailchimp_member WHERE snapshot_id = {base_id}
"""


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S+00:00")


def page_columns(members: list[dict], rnd: int) -> pa.RecordBatch:
    """One page of members (API JSON) as an Arrow batch of the store's columns."""
    cols = [pa.array([m.get(c) for m in members], pa.string()) for c in _STRING_COLUMNS]
    dumps = orjson.dumps
    merge = pa.array([dumps(m["merge_fields"]) if m.get("merge_fields") else None
                      for m in members], pa.binary()).cast(pa.string())
    rnds = pa.array([rnd] * len(members), pa.int32())
    return pa.RecordBatch.from_arrays(cols + [merge, rnds], schema=_ARROW_SCHEMA)


@dataclass
class Page:
    """One decoded members page."""

    members: list[dict]
    total: int
    server_time: datetime | None = None


@dataclass
class Read:
    """What one paged query saw."""

    total: int  # total_items of the first page
    server_time: datetime | None  # the server's clock at the first page
    totals: set[int]  # every total_items seen
    consistent: bool  # no page boundary shifted while reading


@dataclass
class Collected:
    """Every member copy read so far, as Arrow batches, plus what was seen of each re-read."""

    batches: list[pa.RecordBatch] = field(default_factory=list)
    # id -> the member as last re-read. Whole members are compared, not last_changed: two
    # changes within one second share a last_changed.
    seen: dict[str, dict] = field(default_factory=dict)
    rows_read: int = 0

    def add(self, members: list[dict], rnd: int) -> None:
        if members:
            self.batches.append(page_columns(members, rnd))
            self.rows_read += len(members)

    def table(self) -> pa.Table:
        return pa.Table.from_batches(self.batches, schema=_ARROW_SCHEMA)


class MemberPager:
    """Reads `GET /lists/{id}/members` pages, up to the client's connection limit at once."""

    def __init__(self, client: MailchimpClient, list_id: str, bar=None):
        self.client = client
        self.path = f"/lists/{list_id}/members"
        self.bar = bar
        self.pages = 0
        self._lock = threading.Lock()

    def page(self, params: dict) -> Page:
        resp = self.client.send("GET", self.path, params=params)
        doc = orjson.loads(resp.content)
        with self._lock:
            self.pages += 1
        members = doc.get("members") or []
        if self.bar is not None:
            self.bar.update(len(members))
        return Page(members, int(doc.get("total_items") or 0), self.client.server_time(resp))

    def read(self, params: dict, fields: tuple[str, ...], on_page) -> Read:
        """Read every page of a query, calling `on_page(members)` for each (from worker
        threads, one at a time).

        Pages overlap by one member (offsets 0, 999, 1998, …): the last member of one page must
        be the first of the next. If members before a boundary were removed between the two
        reads, the positions shifted and someone may have been skipped; `Read.consistent` then
        says so instead of the gap going unnoticed."""
        params = {**params, "count": PAGE_SIZE,
                  "fields": ",".join(["total_items"] + [f"members.{f}" for f in fields])}
        lock = threading.Lock()
        edges: dict[int, tuple] = {}
        totals: set[int] = set()

        def take(offset: int, p: Page) -> None:
            ms = p.members
            with lock:
                totals.add(p.total)
                edges[offset] = (ms[0]["id"] if ms else None,
                                 ms[STRIDE]["id"] if len(ms) > STRIDE else None)
                on_page(ms)

        first = self.page({**params, "offset": 0})
        take(0, first)
        offsets = range(STRIDE, first.total - 1, STRIDE)
        if offsets:
            with ThreadPoolExecutor(self.client.max_connections,
                                    thread_name_prefix="mailchimp-page") as pool:
                futures = [pool.submit(lambda o: take(o, self.page({**params, "offset": o})), o)
                           for o in offsets]
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                for f in futures:
                    f.cancel()
                for f in done:
                    f.result()  # re-raises the first failure
        consistent = all(edges[o - STRIDE][1] is not None and edges[o - STRIDE][1] == edges[o][0]
                         for o in offsets)
        return Read(first.total, first.server_time, totals, consistent)

    def count(self, **params) -> int:
        return self.page({**params, "count": 1, "fields": "total_items"}).total


def read_changed(client: MailchimpClient, list_id: str, since: str,
                 fields: tuple[str, ...] = MEMBER_FIELDS,
                 archived_separately: bool = False) -> dict[str, dict]:
    """Every member changed after `since` (ISO 8601), by id, archived ones included."""
    pager = MemberPager(client, list_id)
    out: dict[str, dict] = {}

    def keep(members):
        for m in members:
            out[m["id"]] = m

    params = {"since_last_changed": since, "sort_field": "last_changed", "sort_dir": "DESC"}
    pager.read(params, fields, keep)
    if archived_separately:
        pager.read({**params, "status": "archived"}, fields, keep)
    return out


class _Snapshotter:
    """The state of one snapshot run (see the module docstring for the method)."""

    def __init__(self, client: MailchimpClient, store: Store, list_id: str, progress: bool):
        self.client = client
        self.store = store
        self.list_id = list_id
        self.bar = tqdm(desc="Mailchimp members", unit=" members", disable=not progress)
        self.pager = MemberPager(client, list_id, self.bar)
        self.got = Collected()
        self.archived_separately = False
        self.rounds = 0
        self.repaired = False
        self.shifted = False  # a page boundary moved during the full pass
        self.present: set[str] | None = None
        self.present_round = 0

    # --- reading ---------------------------------------------------------------------------
    def full_pass(self) -> tuple[int | None, datetime | None]:
        """Every page of the plain listing (+ archived if it leaves them out). Returns the
        total, or None if the audience changed size or shifted while it was read."""
        self.bar.reset(total=None)
        statuses: set[str] = set()

        def keep(members):
            self.got.add(members, 0)
            statuses.update(m.get("status") for m in members)

        r = self.pager.read({}, MEMBER_FIELDS, keep)
        total, consistent = r.total, r.consistent and len(r.totals) == 1
        self.shifted = not r.consistent
        self.bar.total = total
        self.bar.refresh()
        if "archived" not in statuses and self.pager.count(status="archived") > 0:
            self.archived_separately = True
            a = self.pager.read({"status": "archived"}, MEMBER_FIELDS, keep)
            total += a.total
            consistent = consistent and a.consistent and len(a.totals) == 1
            self.shifted |= not a.consistent
        return (total if consistent else None), r.server_time

    def changed_round(self, since: datetime, rnd: int) -> tuple[int, datetime, bool]:
        """Re-read members changed after `since`; returns (members not seen before, server
        time of the round, whether the read was consistent)."""
        fresh: list[dict] = []

        def keep(members):
            for m in members:
                if self.got.seen.get(m["id"]) != m:
                    self.got.seen[m["id"]] = m
                    fresh.append(m)

        params = {"since_last_changed": _iso(since), "sort_field": "last_changed",
                  "sort_dir": "DESC"}
        r = self.pager.read(params, MEMBER_FIELDS, keep)
        consistent = r.consistent
        if self.archived_separately:
            consistent &= self.pager.read({**params, "status": "archived"}, MEMBER_FIELDS,
                                          keep).consistent
        self.got.add(fresh, rnd)
        self.rounds = rnd
        # A shifted read may have skipped a changed member: the caller reads the window again.
        return len(fresh), r.server_time or utcnow(), consistent

    def audience_total(self) -> int:
        n = self.pager.count()
        if self.archived_separately:
            n += self.pager.count(status="archived")
        return n

    def repair(self) -> None:
        """Find exactly which members exist (an id-only pass) and fetch the ones missing."""
        self.repaired = True
        for _ in range(3):
            present: set[str] = set()

            def keep(members, present=present):
                present.update(m["id"] for m in members)

            ok = self.pager.read({}, ("id",), keep).consistent
            if self.archived_separately:
                ok &= self.pager.read({"status": "archived"}, ("id",), keep).consistent
            if ok:
                break
        held = set(self.store.con.execute("SELECT DISTINCT id FROM _mc_final").fetchnumpy()["id"]
                   .tolist()) if self._has_final() else set()
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
        self.got.add(fetched, self.rounds)
        self.present, self.present_round = present, self.rounds

    def _has_final(self) -> bool:
        return bool(self.store.con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = '_mc_final'").fetchone()[0])

    # --- assembling ------------------------------------------------------------------------
    def assemble(self, base_id: int | None) -> int:
        """Build the de-duplicated member set in a temporary table; returns its size."""
        con = self.store.con
        table = self.got.table()
        con.register("_mc_staged", table)
        try:
            base = _BASE_SQL.format(base_id=int(base_id)) if base_id is not None else ""
            sql = _ASSEMBLE_SQL.format(staged="_mc_staged", base=base)
            con.execute(f"CREATE OR REPLACE TEMP TABLE _mc_final AS {sql}")
        finally:
            con.unregister("_mc_staged")
        if self.present is not None:
            con.register("_mc_present", pa.table({"id": pa.array(sorted(self.present),
                                                                   pa.string())}))
            # Rows read after the id pass are newer than it: they stay.
            con.execute("DELETE FROM _mc_final WHERE rnd <= ? AND id NOT IN "
                        "(SELECT id FROM _mc_present)", [self.present_round])
            con.unregister("_mc_present")
        return con.execute("SELECT count(*) FROM _mc_final").fetchone()[0]

    def close(self) -> None:
        self.bar.close()
        self.store.con.execute("DROP TABLE IF EXISTS _mc_final")


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
        snap_id = store.begin_snapshot("mailchimp", meta)
        run = _Snapshotter(client, store, settings.list_id, progress)
        try:
            return _run(run, store, snap_id, info, started, base, settings, client,
                        requests_before)
        except MailchimpError as exc:
            store.fail_snapshot(snap_id, str(exc))
            raise
        finally:
            run.close()
    finally:
        if own:
            client.close()


def _run(run: _Snapshotter, store: Store, snap_id: int, info: dict, started: datetime,
         base: Snapshot | None, settings: MailchimpSettings, client: MailchimpClient,
         requests_before: int) -> Snapshot:
    if base is None:
        trusted_total, _ = run.full_pass()
        since = started - REREAD_OVERLAP
    else:
        run.archived_separately = bool(base.meta.get("archived_listed_separately"))
        trusted_total = None
        since = datetime.fromisoformat(base.meta["server_started_at"]) - INCREMENTAL_OVERLAP

    def settle(since: datetime) -> tuple[bool, datetime]:
        """Re-read changes in rounds until one brings nothing new."""
        nonlocal trusted_total
        for _ in range(MAX_ROUNDS):
            fresh, when, consistent = run.changed_round(since, run.rounds + 1)
            if not consistent:  # the read shifted: read the same window again
                trusted_total = None
                continue
            since = when - REREAD_OVERLAP
            if not fresh:
                return True, since
            trusted_total = None  # members may have come or gone: count again
        return False, since

    base_id = base.id if base else None
    total = None
    settled, since = settle(since)
    n = run.assemble(base_id)
    if settled:
        total = trusted_total if trusted_total is not None else run.audience_total()
        # A shifted full pass may hide a skipped member behind a deleted one in the count.
        if n != total or run.shifted:
            run.repair()
            settled, since = settle(since)
            n = run.assemble(base_id)
            if settled:
                total = run.audience_total()
    complete = settled and n == total
    if not settled:
        message = f"members kept changing through {MAX_ROUNDS} re-reads; take it again later"
    elif not complete:
        message = (f"read {n} members but the audience reports {total} (members were deleted "
                   "or moved while the snapshot ran)")
    else:
        message = None
    lst = pa.table({"id": [settings.list_id], "name": [info.get("name")],
                    "member_count": [(info.get("stats") or {}).get("member_count")],
                    "total_items": [total]},
                   schema=pa.schema([("id", pa.string()), ("name", pa.string()),
                                     ("member_count", pa.int64()), ("total_items", pa.int64())]))
    with store.transaction() as con:
        con.execute(f"INSERT INTO mailchimp_member SELECT {int(snap_id)}, {_STORE_COLUMNS} "
                    "FROM _mc_final")
        con.register("_mc_list", lst)
        con.execute(f"INSERT INTO mailchimp_list SELECT {int(snap_id)}, * FROM _mc_list")
        con.unregister("_mc_list")
    meta = {"archived_listed_separately": run.archived_separately, "shifted": run.shifted,
            "rounds": run.rounds, "repaired": run.repaired,
            "rows_read": run.got.rows_read, "total_items": total,
            "requests": client.stats["requests"] - requests_before,
            "page_requests": run.pager.pages}
    return store.finish_snapshot(snap_id, complete=complete, meta=meta, message=message)
