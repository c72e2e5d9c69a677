"""Member records, identity and time helpers shared by the emulator modules.

A member is stored as a compact ``Record`` (slots, epoch-second integers for
times) rather than as the full API JSON object, so that a million-member
audience fits in memory and loads in seconds; the JSON shape is produced on
demand by :mod:`civimc_sandbox.emulator.render`.
"""

from __future__ import annotations

import functools
import re
import time
from datetime import UTC, datetime

from civimc_audit.common.emails import member_hash  # noqa: F401 - the emulator modules' import
from civimc_audit.common.times import iso_utc

#: Statuses a member can have (Lists/Members response enum).
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived")
#: Statuses a client may write with POST/PUT (no ``archived``: that is DELETE).
WRITABLE_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
#: Statuses PATCH accepts (the spec's PATCH enum has no ``transactional``).
PATCH_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending")
#: Statuses from which an API write may not go to ``subscribed``.
COMPLIANCE_STATUSES = frozenset(("unsubscribed", "cleaned"))

# Deliberately loose: Mailchimp rejects obviously broken addresses with
# "Please provide a valid email address." and we only need that class of error.
_EMAIL_RE = re.compile(r"^[^@\s\"(),:;<>\[\]\\]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
                       r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$")


def valid_email_syntax(email: str) -> bool:
    """True when ``email`` looks like an address at all (not whether it is real)."""
    return bool(_EMAIL_RE.match(email)) and len(email) <= 254


def email_domain(email: str) -> str:
    return email.rpartition("@")[2].lower()


def now_ts() -> int:
    return int(time.time())


@functools.lru_cache(maxsize=1 << 16)  # a batch of feeds renders the same times many times
def iso(ts: int | None) -> str:
    """Epoch seconds -> ``2026-01-05T09:30:00+00:00``; ``None`` -> ``""`` like the real API."""
    if ts is None:
        return ""
    return iso_utc(datetime.fromtimestamp(ts, UTC), offset=True)


def parse_time(value) -> float | None:
    """Parse a timestamp given as datetime, ISO 8601 string, or epoch number.

    Accepts ``Z``, offsets, fractional seconds and a space separator; naive
    values are taken as UTC.  ``None`` and ``""`` mean unset.  Raises
    ``ValueError`` for anything else.
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        text = value.strip()
        dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def parse_ts(value) -> int | None:
    """Like :func:`parse_time` but truncated to whole seconds (the API's precision)."""
    t = parse_time(value)
    return None if t is None else int(t // 1)


#: A value of ``Emulator.garbled`` that leaves the key out of the member as sent.
GARBLED_ABSENT = object()

class Record:
    """One list member as stored by the emulator (the mutable state, nothing derived).

    ``seq`` is the insertion sequence number (the default sort order); ``origin``
    is the subscriber hash the member was created with, from which the stable
    ``contact_id`` is derived even after an email change.
    """

    __slots__ = (
        "email", "id", "status", "lc", "mf", "seq", "origin",
        "ts_opt", "ts_signup", "ip_opt", "ip_signup", "email_type", "language",
        "vip", "interests", "tags", "prev_status", "unsub_reason", "source",
        "location", "permissions", "activity",
    )

    def __init__(self, email: str, h: str, status: str, lc: int, mf: dict | None, seq: int):
        self.email = email
        self.id = h
        self.status = status
        self.lc = lc
        self.mf = mf
        self.seq = seq
        self.origin = h
        self.ts_opt = None
        self.ts_signup = None
        self.ip_opt = ""
        self.ip_signup = ""
        self.email_type = "html"
        self.language = ""
        self.vip = False
        self.interests = None
        self.tags = None
        self.prev_status = None
        self.unsub_reason = None
        self.source = "API - Generic"
        self.location = None
        self.permissions = None
        self.activity = None  # [(epoch seconds, event dict)] oldest first, see .activity

    def copy(self) -> Record:
        c = Record.__new__(Record)
        for s in Record.__slots__:
            setattr(c, s, getattr(self, s))
        return c
