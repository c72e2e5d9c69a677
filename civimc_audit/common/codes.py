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
