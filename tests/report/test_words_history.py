"""The people table's CiviCRM column for history with and without a usable date."""

from __future__ import annotations

from datetime import datetime

from civimc_audit.report.words import REASON_WORDS, civicrm_words, outcome_words


def test_undated_history_reads_as_such():
    row = {"contact_id": 1, "civicrm_history_status": "Removed", "civicrm_status": "Removed",
           "civicrm_changed": None}
    assert civicrm_words(row, 2026) == "removed (no usable date)"
    row["civicrm_changed"] = datetime(2026, 1, 5, 10)
    assert civicrm_words(row, 2026) == "removed 5 Jan"


def test_no_history_date_has_words():
    row = {"outcome": "cannot_sync", "reason_code": "no_history_date", "flags": ""}
    assert outcome_words(row) == f"cannot be synced ({REASON_WORDS['no_history_date']})"
