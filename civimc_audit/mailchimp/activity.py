"""Date evidence from Mailchimp's activity feed: when did a member's status last change?

A member's `last_changed` also moves on a name or interest edit, so it cannot say whether
Mailchimp's "later" change was a change of status (docs/design.md "Date evidence"). The feed
(`GET /lists/{id}/members/{hash}/activity-feed`, filtered to the subscription events: `unsub` and
the signup types) records each status event with its time; the latest one is the evidence.

Only the members the rules need it for are read (reconcile's `evidence_needed`): up to
`BATCH_THRESHOLD` of them one request each, up to the client's `max_connections` at once, retried
by the client like every other read; more through Mailchimp's batch endpoint (batches.py), the
same GET per member as one operation of a batch, asking only for the two fields used.
A feed that still cannot be read comes back `unreadable` with Mailchimp's words, never as an
empty date; only a bad key or data centre (nothing would be readable) is raised.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import pyarrow as pa

from civimc_audit.common.progress import progress_bar
from civimc_audit.errors import EXIT_USAGE, MailchimpError
from civimc_audit.mailchimp.batches import CHUNK, TIMEOUT, run_operations
from civimc_audit.mailchimp.client import MailchimpClient
from civimc_audit.store import Store
from civimc_audit.store.frames import insert_frame

SIGNUP_TYPES = ("generic_signup", "website_signup", "landing_page_signup", "ecommerce_signup",
                "squatter_signup")
#: The subscription events: the ones that change a member's status at Mailchimp.
SUBSCRIPTION_EVENTS = ("unsub", *SIGNUP_TYPES)
#: The `activity_filters` asked for ("signup" as well, the spec's filter for all signups).
FEED_FILTERS = ",".join(("unsub", "signup", *SIGNUP_TYPES))
#: Events read per member: the feed is most recent first, so the first subscription event is
#: the one wanted; a few more cost nothing and guard against events with the same time.
FEED_COUNT = 10
#: Only what latest_status_change reads: a feed answer of a few dozen bytes, not kilobytes.
FEED_FIELDS = "activity.activity_type,activity.created_at_timestamp"
FEED_PARAMS = {"activity_filters": FEED_FILTERS, "count": FEED_COUNT, "fields": FEED_FIELDS}
#: Above this many feeds they are read through Mailchimp's batch endpoint (batches.py): a few
#: calls and one archive per batch instead of a request each (260,000 feeds at 10 connections
#: and 100 ms would be 45 minutes of requests). At or below it, direct reads answer sooner.
BATCH_THRESHOLD = 1000


@dataclass(frozen=True)
class StatusEvidence:
    """One member's evidence: `state` 'read' (with the latest subscription event's time and
    type, both None when the feed records none) or 'unreadable' (with why)."""

    member_id: str
    state: str
    status_changed: datetime | None = None
    status_event: str | None = None
    detail: str | None = None


def _utc(text: str) -> datetime:
    """An API time as naive UTC (the store's convention), to the second."""
    t = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)
    return t.replace(microsecond=0)


def latest_status_change(events: Iterable[dict]) -> tuple[datetime | None, str | None]:
    """The time and type of the latest subscription event among `events` (any order)."""
    best: tuple[datetime, str] | None = None
    for e in events:
        kind, when = e.get("activity_type"), e.get("created_at_timestamp")
        if kind in SUBSCRIPTION_EVENTS and when:
            t = _utc(when)
            if best is None or t > best[0]:
                best = (t, kind)
    return (None, None) if best is None else best


def _feed_path(list_id: str, member_id: str) -> str:
    return f"/lists/{list_id}/members/{member_id}/activity-feed"


def _from_feed(member_id: str, path: str, content: bytes | str) -> StatusEvidence:
    """The evidence in a feed answer's body; unreadable when it is not a feed."""
    try:
        body = orjson.loads(content)
        when, kind = latest_status_change(body.get("activity") or ())
    except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        return StatusEvidence(member_id, "unreadable",
                              detail=f"Mailchimp GET {path}: an answer that is not a feed ({exc})")
    return StatusEvidence(member_id, "read", when, kind)


def read_one(client: MailchimpClient, list_id: str, member_id: str) -> StatusEvidence:
    """One member's feed (retried by the client); unreadable rather than raised."""
    path = _feed_path(list_id, member_id)
    try:
        resp = client.send("GET", path, params=FEED_PARAMS)
    except MailchimpError as exc:
        if exc.exit_code == EXIT_USAGE:  # a bad key or data centre: nothing would be readable
            raise
        return StatusEvidence(member_id, "unreadable", detail=str(exc))
    return _from_feed(member_id, path, resp.content)


def _read_direct(client: MailchimpClient, list_id: str, member_ids: list[str],
                 progress: bool = False) -> list[StatusEvidence]:
    if not member_ids:
        return []
    workers = max(1, min(client.max_connections, len(member_ids)))
    out: list[StatusEvidence] = []
    with (ThreadPoolExecutor(max_workers=workers, thread_name_prefix="feed") as pool,
          progress_bar(progress, total=len(member_ids), desc="activity feeds",
                       unit="feed") as bar):
        for e in pool.map(lambda h: read_one(client, list_id, h), member_ids):
            out.append(e)
            bar.update()
    return out


def _read_batched(client: MailchimpClient, list_id: str, member_ids: list[str], *,
                  chunk: int, timeout: float, progress: bool) -> dict[str, StatusEvidence]:
    """The feeds through /batches (batches.py); an operation's error answer is unreadable with
    Mailchimp's words as a direct read would give them, and what the batches did not answer
    (a batch refused or not finished in time, a 429/5xx answer that a direct read retries) is
    read directly."""
    ops = [{"method": "GET", "path": _feed_path(list_id, h), "params": FEED_PARAMS,
            "operation_id": h} for h in dict.fromkeys(member_ids)]
    run = run_operations(client, ops, chunk=chunk, timeout=timeout, progress=progress,
                         desc="activity feeds (batch)")
    found: dict[str, StatusEvidence] = {}
    again = list(run.missing)
    for h, r in run.results.items():
        path = _feed_path(list_id, h)
        if r.status_code < 400:
            found[h] = _from_feed(h, path, r.response)
        elif r.status_code == 429 or r.status_code >= 500:
            again.append(h)  # "later", not "no": a direct read retries it
        else:
            exc = client.problem(r.status_code, r.response, "GET", path)
            if exc.exit_code == EXIT_USAGE:
                raise exc
            found[h] = StatusEvidence(h, "unreadable", detail=str(exc))
    if again:
        sys.stderr.write(f"civimc-audit: reading {len(again)} activity feed(s) the batches did "
                         "not answer directly\n")
        found.update((e.member_id, e) for e in _read_direct(client, list_id, again, progress))
    return found


def read_status_changes(client: MailchimpClient, list_id: str, member_ids: list[str], *,
                        batch_threshold: int | None = None, batch_chunk: int = CHUNK,
                        batch_timeout: float = TIMEOUT,
                        progress: bool = False) -> list[StatusEvidence]:
    """Every listed member's evidence, in the order given: up to `batch_threshold` feeds one
    request each, `max_connections` at a time; more through Mailchimp's batch endpoint in
    batches of `batch_chunk` operations, waiting at most `batch_timeout` s for them
    (`batch_threshold` None: BATCH_THRESHOLD)."""
    if len(member_ids) <= (BATCH_THRESHOLD if batch_threshold is None else batch_threshold):
        return _read_direct(client, list_id, member_ids, progress)
    found = _read_batched(client, list_id, member_ids, chunk=batch_chunk,
                          timeout=batch_timeout, progress=progress)
    return [found[h] for h in member_ids]


_SCHEMA = pa.schema([("member_id", pa.string()), ("state", pa.string()),
                     ("status_changed", pa.timestamp("us")), ("status_event", pa.string()),
                     ("detail", pa.string())])


@dataclass(frozen=True)
class EvidenceResult:
    """What one evidence step did: members whose feed was read, requests sent (retries
    included), how many feeds stayed unreadable, and the seconds the reads took."""

    members: int
    requests: int
    unreadable: int
    seconds: float

    def meta(self, civicrm_snapshot_id: int) -> dict:
        return {"feed_members": self.members, "feed_requests": self.requests,
                "feed_unreadable": self.unreadable, "feed_seconds": round(self.seconds, 3),
                "evidence_civicrm_snapshot_id": civicrm_snapshot_id}

    def line(self) -> str:
        text = (f"date evidence: read {self.members} activity feed(s) in {self.requests} "
                "request(s)")
        return text + (f", {self.unreadable} unreadable (flagged status_change_unknown)"
                       if self.unreadable else "")


def evidence_frame(found: list[StatusEvidence]) -> pa.Table:
    return pa.Table.from_pylist([{"member_id": e.member_id, "state": e.state,
                                  "status_changed": e.status_changed,
                                  "status_event": e.status_event, "detail": e.detail}
                                 for e in found], schema=_SCHEMA)


def gather_evidence(client: MailchimpClient, store: Store, list_id: str,
                    civicrm_snapshot_id: int, mailchimp_snapshot_id: int,
                    member_ids: list[str], *, progress: bool = False,
                    batch_threshold: int | None = None) -> EvidenceResult:
    """Read the listed members' feeds and store the evidence for the pair of snapshots
    (replacing any stored before); the Mailchimp snapshot's meta counts the requests."""
    before = client.stats["requests"]
    t0 = time.monotonic()
    found = read_status_changes(client, list_id, member_ids, batch_threshold=batch_threshold,
                                progress=progress)
    result = EvidenceResult(len(member_ids), client.stats["requests"] - before,
                            sum(e.state == "unreadable" for e in found), time.monotonic() - t0)
    with store.transaction() as con:
        con.execute("DELETE FROM mailchimp_evidence WHERE mailchimp_snapshot_id = ?"
                    " AND civicrm_snapshot_id = ?", [mailchimp_snapshot_id, civicrm_snapshot_id])
        if found:
            insert_frame(con, "mailchimp_evidence", evidence_frame(found),
                         select="$m, $c, member_id, state, status_changed, status_event, detail",
                         params={"m": mailchimp_snapshot_id, "c": civicrm_snapshot_id})
    store.add_snapshot_meta(mailchimp_snapshot_id, result.meta(civicrm_snapshot_id))
    return result
