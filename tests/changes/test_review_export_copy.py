"""Issue 18: `review --export` is written by DuckDB (COPY … TO) and must hold exactly the text
the pandas path wrote (frame_csv of _csv_frame, which `review --import` also compares with):
defused cells, blanks, whole-number contact ids, ISO 8601 UTC dates with a Z, CRLF, removals
and flagged items first."""

from __future__ import annotations

import os
from datetime import datetime

from civimc_audit.changes.plan import get_plan
from civimc_audit.changes.review import _csv_frame, export_csv
from civimc_audit.common.csvcells import frame_csv
from civimc_audit.store import Store

TRICKY = ["=SUM(A1:A9)", "+1", "-2", "@cmd", "\tTabbed", "\rReturned", "'quoted", "''two",
          "'=guarded", "plain", "", "=", "a,b", 'say "hi"', "two\nlines", "cr\r\nlf",
          " leading", "# hash", "betty gen3#1", "a#", "Zoë 日本", None]
OUTCOMES = ["add_to_mailchimp", "remove_from_civicrm_group", "unsubscribe_in_mailchimp",
            "add_to_civicrm_group"]


def _fill(store: Store) -> None:
    con = store.con
    con.execute("INSERT INTO plans (token, reconciliation_id, civicrm_snapshot_id,"
                " mailchimp_snapshot_id, group_id, list_id, created_at, status)"
                " VALUES ('tok''=en', 1, 1, 2, 1, 'l', TIMESTAMP '2026-01-01', 'open')")
    when = datetime(2026, 3, 1, 2, 30, 0, 500_000)
    for i, text in enumerate(TRICKY, start=1):
        con.execute(
            "INSERT INTO plan_items VALUES (1, ?, ?, ?, 'add', ?, 'R1', ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?, ?, ?, NULL, NULL, NULL)",  # (no interest item)
            [i, 100 + i, "mailchimp" if i % 2 else "civicrm", OUTCOMES[i % 4], text,
             "" if i % 3 else "flag_a", text or "", text, None if i % 4 == 0 else 10**10 + i,
             text, text, text, None if i % 5 == 0 else when, text,
             None if i % 2 else datetime(1999, 12, 31, 23, 59, 59),
             '{"email_address": "' + str(i) + '", "status": "subscribed"}'])
        if i % 3 == 0:
            con.execute("INSERT INTO decisions (plan_id, item_id, decision, reviewer, decided_at,"
                        " note, via) VALUES (1, ?, ?, ?, ?, ?, 'cli')",
                        [i, "approved" if i % 2 else "rejected", text or "-rev", when, text])


def test_review_export_is_the_frame_csv_text(tmp_path):
    with Store(tmp_path / "audit.duckdb") as store:
        _fill(store)
        expected = frame_csv(_csv_frame(store, get_plan(store, 1))).encode("utf-8")
        target = tmp_path / "review.csv"
        assert export_csv(store, 1, target) == len(TRICKY)
    got = target.read_bytes()
    assert got == expected
    assert b"'=SUM(A1:A9)" in got and b"\r\n" in got
    assert oct(os.stat(target).st_mode & 0o777) == "0o600"
    assert not target.with_name("review.csv.tmp").exists()
