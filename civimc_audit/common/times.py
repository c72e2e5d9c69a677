"""Times as the toolkit keeps and names them: naive UTC datetimes to the second in the store,
compact UTC stamps in folder names."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    """Now as a naive UTC datetime, second precision (the store's convention)."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def run_stamp() -> str:
    """Now as a folder-name stamp, e.g. 20260301T023000Z."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
