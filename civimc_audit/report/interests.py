"""The audit report's interest-group section (DESIGN "The audit report" 5): per mapped interest
the count of each outcome, then the people, removals first.

Self-contained on purpose: one function reads the store and returns the section's two tables,
and `show_interests` is all the notebook's one cell calls (it shows nothing when no interest is
mapped), so the rest of the notebook can change without touching this.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from civimc_audit.common.codes import INTEREST_OUTCOME_ORDER
from civimc_audit.config import NOTEBOOK_CONFIG_HINT, load_config
from civimc_audit.reconcile import interest_frame
from civimc_audit.report.words import who
from civimc_audit.store import Store
from civimc_audit.store.lock import open_for_reading

#: An interest row's outcome in words (what happens to the person).
INTEREST_OUTCOME_WORDS = {
    "remove_from_civicrm_group": "gets removed from the CiviCRM group",
    "clear_interest_in_mailchimp": "interest cleared in Mailchimp",
    "cannot_sync": "cannot be synced",
    "set_interest_in_mailchimp": "interest set in Mailchimp",
    "add_to_civicrm_group": "gets added to the CiviCRM group",
    "no_change": "no change",
}
_COLUMNS = ["person_id", "email", "contact_id", "display_name", "interest_id", "interest_name",
            "category_title", "civicrm_group_id", "civicrm_group_title", "mailchimp_interest",
            "civicrm_status", "outcome", "rule", "reason"]


@dataclass(frozen=True)
class InterestSection:
    """`counts`: one row per mapped interest with its people per outcome (removals first);
    `people`: one row per person and interest, removals first."""

    counts: pd.DataFrame
    people: pd.DataFrame

    @property
    def empty(self) -> bool:
        return self.counts.empty


def interest_section(store: Store, reconciliation_id: int | None = None) -> InterestSection:
    """The section's tables for one reconciliation (the latest by default)."""
    rows = interest_frame(store, reconciliation_id, columns=_COLUMNS)
    return InterestSection(_counts(rows), _people(rows))


def _label(row) -> str:
    name = row["interest_name"]
    name = name if isinstance(name, str) else f"(not in the audience) {row['interest_id']}"
    return f"{name} ({row['category_title']})" if isinstance(row["category_title"], str) else name


def _counts(rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for (_, _), part in rows.groupby(["civicrm_group_id", "interest_id"], sort=False):
        first = part.iloc[0]
        counts = part["outcome"].value_counts()
        out.append({"Interest": _label(first),
                    "CiviCRM group": f"{first['civicrm_group_title']} ({first['civicrm_group_id']})",
                    **{o: int(counts.get(o, 0)) for o in INTEREST_OUTCOME_ORDER}})
    return pd.DataFrame(out, columns=["Interest", "CiviCRM group", *INTEREST_OUTCOME_ORDER])


def _side_words(row) -> tuple[str, str]:
    value = row["mailchimp_interest"]
    mailchimp = "(no entry)" if value is None or pd.isna(value) else ("in" if value else "not in")
    status = row["civicrm_status"]
    civicrm = {"Added": "in the group", "Removed": "removed", "Pending": "pending",
               "Deleted": "deleted"}.get(status, "never in group") if isinstance(status, str) \
        else "never in group"
    return mailchimp, civicrm


def _people(rows: pd.DataFrame) -> pd.DataFrame:
    order = {o: i for i, o in enumerate(INTEREST_OUTCOME_ORDER)}
    records = sorted(rows.to_dict("records"),
                     key=lambda r: (order.get(r["outcome"], 99), r["person_id"],
                                    r["civicrm_group_id"]))
    out = []
    for r in records:
        mailchimp, civicrm = _side_words(r)
        out.append({"Who": who(r), "Email": r.get("email") or "", "Interest": _label(r),
                    "Mailchimp": mailchimp, "CiviCRM": civicrm,
                    "Outcome": INTEREST_OUTCOME_WORDS.get(r["outcome"], r["outcome"]),
                    "Rule": r["rule"], "Why": r["reason"]})
    return pd.DataFrame(out, columns=["Who", "Email", "Interest", "Mailchimp", "CiviCRM",
                                      "Outcome", "Rule", "Why"])


def show_interests(config_path: str | None = None, reconciliation_id: int | None = None,
                   max_rows: int = 500) -> InterestSection:
    """Display the section in a notebook (its heading, the counts, the people); nothing at all
    when no interest is mapped. Returns the section."""
    from IPython.display import HTML, Markdown, display

    from civimc_audit.report.audit import AuditReport, html_table

    config = load_config(config_path, hint=NOTEBOOK_CONFIG_HINT)
    store, _note = open_for_reading(config.store_file)
    with store:
        section = interest_section(store, reconciliation_id)
    if section.empty:
        return section
    display(HTML(AuditReport.heading("interest-groups")))
    display(Markdown("Each mapped Mailchimp interest and its CiviCRM group, for the people who "
                     "stay subscribed: what would happen, removals first."))
    display(HTML(html_table(section.counts)))
    display(HTML(html_table(section.people, max_rows=max_rows)))
    if len(section.people) > max_rows:
        display(Markdown(f"Showing {max_rows} of {len(section.people)} interest rows; "
                         "`civimc-audit outcomes --interests --format csv` lists them all."))
    return section
