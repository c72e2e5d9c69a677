"""The one ISO-8601 UTC formatter and parser, and the run-folder stamp."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pandas as pd
import pytest

from civimc_audit.common.times import iso_utc, parse_iso_utc, parse_run_stamp, run_stamp


def test_naive_times_are_utc_and_written_to_the_second():
    when = datetime(2026, 3, 1, 2, 30, 5, 987654)
    assert iso_utc(when) == "2026-03-01T02:30:05Z"
    assert iso_utc(when, offset=True) == "2026-03-01T02:30:05+00:00"


def test_aware_times_are_converted_to_utc():
    berlin = timezone(timedelta(hours=1))
    assert iso_utc(datetime(2026, 3, 1, 3, 30, tzinfo=berlin)) == "2026-03-01T02:30:00Z"
    assert iso_utc(datetime(2026, 3, 1, 2, 30, tzinfo=UTC), offset=True) == \
        "2026-03-01T02:30:00+00:00"


def test_pandas_timestamps_format_like_datetimes():
    assert iso_utc(pd.Timestamp("2026-03-01 02:30:05.5")) == "2026-03-01T02:30:05Z"


@pytest.mark.parametrize("text", ["2026-03-01T02:30:05Z", "2026-03-01T02:30:05+00:00",
                                  "2026-03-01T03:30:05+01:00", "2026-03-01T02:30:05"])
def test_parsing_gives_naive_utc(text):
    assert parse_iso_utc(text) == datetime(2026, 3, 1, 2, 30, 5)


def test_format_and_parse_round_trip():
    when = datetime(2026, 12, 31, 23, 59, 59)
    assert parse_iso_utc(iso_utc(when)) == parse_iso_utc(iso_utc(when, offset=True)) == when
    with pytest.raises(ValueError):
        parse_iso_utc("yesterday")


def test_run_stamps_parse_back():
    stamp = run_stamp()
    assert len(stamp) == 16 and stamp.endswith("Z")
    assert parse_run_stamp("20260301T023000Z") == datetime(2026, 3, 1, 2, 30)
    with pytest.raises(ValueError):
        parse_run_stamp("apply-plan1-20260301T023000Z")
