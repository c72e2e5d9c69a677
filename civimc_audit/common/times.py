"""Times as the toolkit keeps and names them: naive UTC datetimes to the second in the store,
ISO-8601 UTC strings to the second in files and API parameters, compact UTC stamps in folder
names."""

from __future__ import annotations

from datetime import UTC, datetime

RUN_STAMP_FORMAT = "%Y%m%dT%H%M%SZ"


def utcnow() -> datetime:
    """Now as a naive UTC datetime, second precision (the store's convention)."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def run_stamp() -> str:
    """Now as a folder-name stamp, e.g. 20260301T023000Z."""
    return datetime.now(UTC).strftime(RUN_STAMP_FORMAT)


def parse_run_stamp(stamp: str) -> datetime:
    """A folder-name stamp (20260301T023000Z) as a naive UTC datetime; ValueError if it is not
    one."""
    return datetime.strptime(stamp, RUN_STAMP_FORMAT)


def iso_utc(when: datetime, *, offset: bool = False) -> str:
    """`when` as ISO-8601 UTC to the second: 2026-03-01T02:30:00Z, or with `offset`
    2026-03-01T02:30:00+00:00 (the form Mailchimp writes and is sent). A naive datetime is
    taken to be UTC already (the store's convention); an aware one is converted. Fractions of a
    second are dropped."""
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S") + ("+00:00" if offset else "Z")


def parse_iso_utc(text: str) -> datetime:
    """An ISO-8601 time (`Z`, an offset, or none meaning UTC) as a naive UTC datetime; the
    inverse of `iso_utc`. ValueError if it is not one."""
    when = datetime.fromisoformat(text)
    return when.astimezone(UTC).replace(tzinfo=None) if when.tzinfo else when
