"""The people table's CiviCRM column for history with and without a usable date, and the code
tables the review buckets are built from."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

from civimc_audit.common.codes import FLAG_CODES, FLAG_HELP, REASON_CODES, REASON_HELP, code_help
from civimc_audit.report.words import (
    REASON_WORDS,
    civicrm_words,
    flag_words,
    outcome_words,
    people_table,
)

SQL = Path(__file__).resolve().parents[2] / "civimc_audit" / "reconcile" / "sql"


def test_undated_history_reads_as_such():
    row = {"contact_id": 1, "civicrm_history_status": "Removed", "civicrm_status": "Removed",
           "civicrm_changed": None}
    assert civicrm_words(row, 2026) == "removed, history date blank"
    row["civicrm_changed"] = datetime(2026, 1, 5, 10)
    assert civicrm_words(row, 2026) == "removed 5 Jan"


def test_no_history_at_all_and_a_blank_history_date_read_differently():
    none = civicrm_words({"contact_id": 1, "civicrm_history_status": None,
                          "civicrm_status": "Added", "civicrm_changed": None}, 2026)
    blank = civicrm_words({"contact_id": 1, "civicrm_history_status": "Added",
                           "civicrm_status": "Added", "civicrm_changed": None}, 2026)
    assert none == "in group, no history at all"
    assert blank == "added, history date blank"
    # the reason and the flag for the two say which one they are, not "no history date" twice
    assert "blank" in REASON_WORDS["no_history_date"]
    assert FLAG_HELP["no_civicrm_history"][0] == "no CiviCRM history at all"


def test_no_history_date_has_words():
    row = {"outcome": "cannot_sync", "reason_code": "no_history_date", "flags": ""}
    assert outcome_words(row) == f"cannot be synced ({REASON_WORDS['no_history_date']})"


def test_every_reason_code_and_flag_the_sql_can_write_has_a_sentence():
    rules = (SQL / "07_rules.sql").read_text()
    block = rules[:rules.index("END AS reason_code")]
    block = block[block.rindex("CASE"):]
    reasons = set(re.findall(r"THEN\s+'([a-z_]+)'", block))
    assert reasons and reasons <= set(REASON_HELP), reasons - set(REASON_HELP)
    assert set(REASON_CODES) <= set(REASON_HELP), set(REASON_CODES) - set(REASON_HELP)
    assert set(FLAG_CODES) <= set(FLAG_HELP), set(FLAG_CODES) - set(FLAG_HELP)


def test_a_code_without_a_description_yet_still_gets_a_row_named_by_it():
    words, sentence = code_help("profile_edit_decided_x")
    assert words == "profile edit decided x" and "profile_edit_decided_x" in sentence
    assert flag_words("email_differs profile_edit_decided_x") == (
        f"{FLAG_HELP['email_differs'][0]}; profile edit decided x")


def test_a_contact_without_a_name_is_named_by_their_address():
    frame = people_table(__import__("pandas").DataFrame([{
        "person_id": 1, "outcome": "cannot_sync", "email": "held@example.org",
        "display_name": None, "contact_id": 7, "mailchimp_status": None,
        "civicrm_status": "Added", "civicrm_history_status": "Added", "civicrm_changed": None,
        "reason_code": "no_usable_email", "reason": "cannot add them", "flags": None}]), 2026)
    row = frame.iloc[0].to_dict()
    assert row["Who"] == "held@example.org" and row["Email"] == "held@example.org"
    assert row["Why"] == "Cannot add them" and row["Flags"] == ""
