"""Issue 15 point 3: the report of a million people stays a page a browser opens at once: under
10 MB of HTML (the first people of each outcome, everyone in people.csv beside it), its counts
computed in the store. Only the size is asserted; bench/bench_report.py prints the times."""

from __future__ import annotations

import csv

import pytest
from support.report_html import people_rows

from bench.bench_report import REPORT_MAX_BYTES, million_report
from civimc_audit.report.audit import PEOPLE_CSV, PER_OUTCOME

pytestmark = pytest.mark.slow


def test_a_million_people_report_stays_under_10_mb(tmp_path):
    run, rows, _seconds = million_report(tmp_path, 1_000_000)
    assert rows >= 1_000_000
    page = (run / "audit.html").read_text(encoding="utf-8")
    size = len(page.encode())
    print(f"audit.html of {rows:,} people: {size / 1e6:.2f} MB")
    assert size < REPORT_MAX_BYTES
    shown = people_rows(page)
    outcomes = {r["Outcome"] for r in shown}
    assert len(shown) <= PER_OUTCOME * 7 and len(outcomes) >= 5
    assert f"of {rows:,} people already agree;" in page  # the counts are over everyone
    assert '<a href="people.csv">people.csv</a>' in page
    with (run / PEOPLE_CSV).open(encoding="utf-8") as f:
        assert sum(1 for _ in csv.reader(f)) == rows + 1  # everyone, and the header
