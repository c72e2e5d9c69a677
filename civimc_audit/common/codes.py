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

# What each reason code (a cannot_sync row's reason, reconcile/sql/07_rules.sql) and each flag
# means and what to do, in one or two sentences: the report's review buckets are built from these
# tables, so a code added here (and in the SQL) shows up there with its sentence. Keys: the code;
# values: (a few words for a table cell, the sentence for the review bucket).
REASON_HELP: dict[str, tuple[str, str]] = {
    "cleaned_at_mailchimp": (
        "Mailchimp cleaned the address",
        "Mailchimp cleaned the address after it bounced; it cannot be resubscribed. Find a new "
        "address for them."),
    "email_on_hold": (
        "email on hold in CiviCRM",
        "The address is on hold in CiviCRM (bounces); fix or replace it first."),
    "other_email_subscribed": (
        "another of their addresses is subscribed",
        "Another of the contact's addresses is subscribed at Mailchimp, so the contact is kept in "
        "the group (R2), or that address changed later than CiviCRM and puts the contact back in "
        "the group, so this address is not unsubscribed (R9)."),
    "no_usable_email": (
        "no usable email",
        "The contact has no email that is not on hold (the address shown is the one on hold); "
        "give them a working address in CiviCRM."),
    "email_shared_with_other_contact": (
        "email belongs to another contact",
        "Their best email is already at Mailchimp as another contact's address, or another "
        "contact in the group has the same best email (the lowest contact id is added); merge "
        "the duplicates."),
    "no_history_date": (
        "their CiviCRM history row has a blank date",
        "They have a CiviCRM subscription history row for the group, but its date is blank or "
        "zero, so nobody knows whether CiviCRM or Mailchimp changed later; nothing is removed or "
        "added on an unknown date. (This is not the same as having no history at all, which "
        "the flag no_civicrm_history marks.) Fix the history date in CiviCRM, or re-add or "
        "remove them there, and audit again."),
    "no_member_id": (
        "Mailchimp sent the member without an id",
        "Mailchimp sent this member record without an id, so it cannot be addressed safely; "
        "nothing is changed for them. Look the address up in Mailchimp and audit again."),
    "no_member_email": (
        "Mailchimp sent the member without an email",
        "Mailchimp sent this member record without an email address; nothing is changed for "
        "them. Look the member up in Mailchimp and audit again."),
    "unknown_member_status": (
        "unknown Mailchimp status",
        "Mailchimp gave the member a status the rules do not know, so nothing is removed, "
        "unsubscribed or added on it. Check the member in Mailchimp."),
    "no_member_change_date": (
        "no readable Mailchimp change date",
        "Mailchimp sent no readable date of the member's last change (none, or not a date), so "
        "nobody knows which side changed later; nothing is changed for them. Audit again later."),
}

FLAG_HELP: dict[str, tuple[str, str]] = {
    "duplicate_contacts": (
        "duplicate contacts",
        "More than one CiviCRM contact has this email. Merge the duplicates in CiviCRM so the "
        "sync knows who is who."),
    "contact_deleted": (
        "contact in CiviCRM's trash",
        "The email belongs to a contact in CiviCRM's trash. The sync ignores trashed contacts; "
        "restore or purge them if that is wrong."),
    "consent_conflict": (
        "CiviCRM says do not email",
        "CiviCRM says not to email this person (do not email, opted out or deceased) but they "
        "would be or stay subscribed. Check before applying."),
    "civicrm_pending": (
        "CiviCRM membership pending",
        "The CiviCRM membership is Pending (waiting for confirmation)."),
    "no_civicrm_history": (
        "no CiviCRM history at all",
        "In the CiviCRM group with no subscription history rows at all (not even one with a "
        "blank date); the sync extension never acts on these, this toolkit lets Mailchimp "
        "decide, by the rule."),
    "needs_confirmation": (
        "asked to confirm",
        "They unsubscribed themselves at Mailchimp; they can only be sent a confirmation email "
        "(pending), never forced back."),
    "email_differs": (
        "Mailchimp address differs",
        "Their Mailchimp address is not their best email in CiviCRM."),
    "profile_edit_decided": (
        "a profile edit decided", EVIDENCE_FLAG_WORDS["profile_edit_decided"]),
    "status_change_unknown": (
        "Mailchimp's change unknown", EVIDENCE_FLAG_WORDS["status_change_unknown"]),
}


def code_help(code: str) -> tuple[str, str]:
    """(short words, sentence) for a reason code or flag; a code without a description yet (one
    just added to the SQL) still gets a row, named by its code."""
    return REASON_HELP.get(code) or FLAG_HELP.get(code) or (
        code.replace("_", " "), f"No description yet for {code!r} (see docs/design.md).")

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
