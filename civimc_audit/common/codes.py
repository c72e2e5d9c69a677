"""The outcome codes of docs/design.md, shared by the config, the rules' readers and the reports."""

from __future__ import annotations

OUTCOME_CODES = (
    "no_change",
    "add_to_mailchimp",
    "resubscribe_in_mailchimp",
    "unsubscribe_in_mailchimp",
    "add_to_civicrm_group",
    "remove_from_civicrm_group",
    "cannot_sync",
)

# The order people read them in: removals first, agreement last.
OUTCOME_ORDER = ["remove_from_civicrm_group", "unsubscribe_in_mailchimp", "cannot_sync",
                 "resubscribe_in_mailchimp", "add_to_mailchimp", "add_to_civicrm_group",
                 "no_change"]

# The rules of docs/rules.md (reconcile/sql/07_rules.sql), R1..R10.
RULE_CODES = tuple(f"R{n}" for n in range(1, 11))

# The flags an outcome row can carry (reconcile/sql/08_policy_flags.sql); they never change it.
FLAG_CODES = ("duplicate_contacts", "contact_deleted", "consent_conflict", "civicrm_pending",
              "no_civicrm_history", "needs_confirmation", "email_differs",
              "profile_edit_decided", "status_change_unknown")

# The date-evidence flags (docs/design.md "Date evidence"), in plain words with what to do: a
# review bucket each. Standing approvals never approve a row carrying one (changes/standing.py).
EVIDENCE_FLAG_WORDS = {
    "profile_edit_decided": "Mailchimp's last change was a profile edit (a name or an interest), "
                            "not a change of status: their status changed at Mailchimp no later "
                            "than CiviCRM's change, yet the later date decides, as in the sync. "
                            "Check the person's wish (Mailchimp's activity feed, CiviCRM's "
                            "history) and approve or reject each row; policy date_basis = "
                            "\"status_change\" decides these by the status-change date instead.",
    "status_change_unknown": "Mailchimp changed later than CiviCRM, but its activity feed could "
                             "not be read (or was not read for these snapshots), so nobody knows "
                             "whether that was a change of status or only a profile edit. Take "
                             "both snapshots again (`civimc-audit snapshot`) before approving.",
}
#: Flags that keep a row out of standing approvals whatever [schedule] auto_approve says.
NEVER_AUTO_APPROVED_FLAGS = tuple(EVIDENCE_FLAG_WORDS)

# The reason codes of a cannot_sync (reconcile/sql/07_rules.sql): the rules table's exceptions,
# then the defects of a member record the rules cannot read safely (01_inputs.sql).
REASON_CODES = ("other_email_subscribed", "no_usable_email", "email_shared_with_other_contact",
                "email_on_hold", "cleaned_at_mailchimp", "no_history_date",
                "no_member_id", "no_member_email", "unknown_member_status",
                "no_member_change_date")
# The member-record defects among them, in the order 01_inputs.sql tests them.
MEMBER_DEFECT_CODES = ("no_member_id", "no_member_email", "unknown_member_status",
                       "no_member_change_date")

# The interest rows' outcomes (docs/design.md "Interest groups", reconcile/sql/11_interest_rules.sql).
INTEREST_OUTCOME_CODES = (
    "no_change",
    "add_to_civicrm_group",
    "remove_from_civicrm_group",
    "set_interest_in_mailchimp",
    "clear_interest_in_mailchimp",
    "cannot_sync",
)

# Removals first, as for the subscription outcomes.
INTEREST_OUTCOME_ORDER = ["remove_from_civicrm_group", "clear_interest_in_mailchimp",
                          "cannot_sync", "set_interest_in_mailchimp", "add_to_civicrm_group",
                          "no_change"]

# The interest rules I1..I6.
INTEREST_RULE_CODES = tuple(f"I{n}" for n in range(1, 7))
