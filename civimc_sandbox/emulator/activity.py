"""Members' activity feeds (`GET /lists/{id}/members/{hash}/activity-feed`).

Every member has a feed: the events its fixture gives it (``add_member(..., activity=[...])``,
``load_members`` with an ``activity`` key: dicts with ``activity_type`` and
``created_at_timestamp``, plus the type's own fields), and the events the emulator records itself,
as Mailchimp does: a change of status to ``subscribed`` through the API (or a direct set-up edit,
an administrator's action) adds a ``generic_signup``; a change to ``unsubscribed`` adds an
``unsub``. Name, interest, tag and other profile edits add none, although they move
``last_changed`` — which is exactly why a client reads this feed.

A feed is kept on the member's ``Record.activity`` as ``[(epoch seconds, event dict)]`` in the
order the events happened; the endpoint answers most recent first, ``count``/``offset`` paged,
optionally filtered by ``activity_filters``. A filter names an activity type; ``signup`` (listed
by the spec without a schema of its own) stands for every ``*_signup`` type (our reading).
"""

from __future__ import annotations

from civimc_sandbox.emulator.records import Record, iso, parse_ts

#: The spec's activity_filters enum (Lists/Members/ActivityFeed, flattened).
FILTERS = ("bounce", "click", "conversation", "ecommerce_signup", "event", "web_engagement",
           "generic_signup", "landing_page_signup", "marketing_permission", "note", "open",
           "order", "postcard_sent", "sent", "signup", "squatter_signup", "unsub",
           "website_signup", "survey_response", "sms_bulk_sent", "inbox_thread",
           "qbo_payment_link", "video_call_transcripts")
SIGNUP_TYPES = ("generic_signup", "website_signup", "landing_page_signup", "ecommerce_signup",
                "squatter_signup")


def fixture_events(events) -> list[tuple[int, dict]] | None:
    """A fixture's events (dicts) in stored form, oldest first; ``ValueError`` for one without
    a type or a time."""
    out = []
    for e in events or ():
        body = dict(e)
        kind = body.get("activity_type")
        ts = parse_ts(body.pop("created_at_timestamp", None))
        if not isinstance(kind, str) or ts is None:
            raise ValueError(f"an activity event needs activity_type and created_at_timestamp: {e!r}")
        out.append((ts, body))
    out.sort(key=lambda x: x[0])
    return out or None


def add_event(rec: Record, ts: int, body: dict) -> None:
    """Append one event (a new list: copies of the record taken before keep their feed)."""
    rec.activity = [*(rec.activity or ()), (ts, body)]


def note_status_change(rec: Record, old: str | None, new: str, ts: int,
                       admin: bool = True) -> None:
    """The event Mailchimp records for a status change, if any (subscribe and unsubscribe)."""
    if new == old:
        return
    if new == "subscribed":
        add_event(rec, ts, {"activity_type": "generic_signup", "signup_category": "API"})
    elif new == "unsubscribed":
        add_event(rec, ts, {"activity_type": "unsub", "is_admin_unsubscribed": admin,
                            "unsubscribe_reason": rec.unsub_reason or "N/A"})


def _matches(kind: str, wanted: frozenset[str]) -> bool:
    return kind in wanted or ("signup" in wanted and kind in SIGNUP_TYPES)


def feed(rec: Record, wanted: frozenset[str] | None) -> list[dict]:
    """The member's events as the API renders them, most recent first (ties: later recorded
    first), filtered to the ``wanted`` filters when given."""
    out = []
    for ts, body in reversed(rec.activity or ()):
        kind = body.get("activity_type", "")
        if wanted is None or _matches(kind, wanted):
            out.append({"activity_type": kind, "created_at_timestamp": iso(ts),
                        **{k: v for k, v in body.items() if k != "activity_type"}})
    return out
