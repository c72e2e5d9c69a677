"""Issue 18: people.csv is written by DuckDB (COPY … TO) and must hold exactly the text
`outcomes --format csv` prints (outcomes_csv_text of the same rows): same columns, ISO 8601 UTC
dates with a Z, blanks for none, whole-number contact ids, defused cells, CRLF."""

from __future__ import annotations

import os
from datetime import datetime

from civimc_audit.reconcile import OUTCOME_COLUMNS
from civimc_audit.store import Store
from civimc_audit.store.export import outcomes_csv_text, write_outcomes_csv

TRICKY = ["=SUM(A1:A9)", "+1", "-2", "@cmd", "\tTabbed", "\rReturned", "'quoted", "''two",
          "'=guarded", "plain", "", "=", "'", "a,b", 'say "hi"', "two\nlines", "cr\r\nlf",
          " leading space", "trailing space ", "# hash", "betty gen3#1", "a#", "Zoë Ñandú 日本", None]


def _rows():
    when = datetime(2026, 3, 1, 2, 30, 0, 999_000)
    for i, text in enumerate(TRICKY):
        yield {"reconciliation_id": 1, "person_id": len(TRICKY) - i,  # out of order on purpose
               "email": text, "contact_id": None if i % 3 == 0 else 10**12 + i,
               "member_id": text, "display_name": text,
               "mailchimp_status": None if i % 2 else "subscribed",
               "mailchimp_changed": None if i % 4 == 1 else when,
               "mailchimp_status_changed": None if i % 2 else datetime(1999, 12, 31, 23, 59, 59),
               "civicrm_status": text, "civicrm_changed": None if i % 5 == 0 else when,
               "winner": text, "outcome": text or "in_sync", "rule": "R1", "reason_code": text,
               "reason": text or "", "flags": text or ""}
    # an unrelated reconciliation's row is not written
    yield {"reconciliation_id": 2, "person_id": 1, "email": "other@example.org", "outcome": "x",
           "rule": "R1", "reason": "", "flags": ""}


def test_people_csv_is_the_outcomes_csv_text(tmp_path):
    with Store(tmp_path / "audit.duckdb") as store:
        for row in _rows():
            cols = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            store.con.execute(f"INSERT INTO outcomes ({cols}) VALUES ({marks})", list(row.values()))
        frame = store.con.execute(
            f"SELECT {', '.join(OUTCOME_COLUMNS)} FROM outcomes WHERE reconciliation_id = 1"
            " ORDER BY person_id").df()
        expected = outcomes_csv_text(frame).encode("utf-8")
        target = tmp_path / "people.csv"
        rows = write_outcomes_csv(store, 1, target, OUTCOME_COLUMNS)
    assert rows == len(TRICKY)
    got = target.read_bytes()
    assert got == expected
    assert b"2026-03-01T02:30:00Z" in got and b".0," not in got
    assert oct(os.stat(target).st_mode & 0o777) == "0o600"
    assert not target.with_name("people.csv.tmp").exists()


def test_people_csv_of_no_rows_is_the_header(tmp_path):
    with Store(tmp_path / "audit.duckdb") as store:
        target = tmp_path / "people.csv"
        assert write_outcomes_csv(store, 7, target, OUTCOME_COLUMNS) == 0
    assert target.read_bytes() == (",".join(OUTCOME_COLUMNS) + "\r\n").encode()


def test_outcomes_csv_of_one_outcome_streams_the_same_text(tmp_path):
    from civimc_audit.store.export import copy_outcomes_csv

    with Store(tmp_path / "audit.duckdb") as store:
        for row in _rows():
            cols = ", ".join(row)
            marks = ", ".join("?" for _ in row)
            store.con.execute(f"INSERT INTO outcomes ({cols}) VALUES ({marks})", list(row.values()))
        frame = store.con.execute(
            f"SELECT {', '.join(OUTCOME_COLUMNS)} FROM outcomes WHERE reconciliation_id = 1"
            " AND outcome = 'plain' ORDER BY person_id").df()
        pieces: list[str] = []
        assert copy_outcomes_csv(store, 1, OUTCOME_COLUMNS, pieces.append, outcome="plain") == 1
    assert "".join(pieces) == outcomes_csv_text(frame)
