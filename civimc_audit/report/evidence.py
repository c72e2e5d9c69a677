"""The report's words on date evidence ("How it decided"): which change decided, and how often.

Mailchimp's last_changed also moves on a profile edit, so for the rows where Mailchimp's later
date changes something (R2, R3) the snapshot read the activity feed (docs/design.md "Date
evidence"). These sentences say how many feeds were read, how many rows a profile edit decided
(the review bucket profile_edit_decided), what policy date_basis did or would do to them, and how
many feeds could not be read — so an admin can trust or question the removals and additions.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from civimc_audit.store import Snapshot

if TYPE_CHECKING:  # pandas is imported where it is used: `civimc-audit report`'s own
    import pandas as pd  # process (run_report) never needs it


def _flagged(outcomes: pd.DataFrame, flag: str) -> pd.Series:
    return outcomes["flags"].fillna("").str.split().apply(lambda fl: flag in fl)


def _people(n: int) -> str:
    return "1 person" if n == 1 else f"{n} people"


def date_evidence_lines(outcomes: pd.DataFrame, policy: dict,
                        mailchimp: Snapshot) -> list[str]:
    """The "how it decided" sentences about date evidence (one list item each)."""
    meta = mailchimp.meta
    lines = []
    if "feed_members" in meta:
        lines.append(f"Mailchimp's activity feed was read for {_people(meta['feed_members'])} "
                     "whose later Mailchimp date would remove them from or add them to the "
                     f"CiviCRM group ({meta['feed_requests']} requests), to see whether that "
                     "date was a change of status or only a profile edit (a name or an "
                     "interest).")
    edited = _flagged(outcomes, "profile_edit_decided")
    n = int(edited.sum())
    basis = policy.get("date_basis", "last_changed")
    flipped = int((edited & (outcomes["winner"] == "civicrm")).sum())
    if n == 0:
        lines.append("No change was decided by a profile edit.")
    elif basis == "status_change":
        lines.append(f"For {_people(n)} Mailchimp's last change was a profile edit: their status "
                     "changed at Mailchimp no later than CiviCRM's change. Policy date_basis = "
                     f"\"status_change\" decides them by the status-change date instead, which "
                     f"changes {flipped} of them (CiviCRM decides); see the review bucket "
                     "profile_edit_decided.")
    else:
        lines.append(f"A profile edit decided {_people(n)}: Mailchimp's last change was not a "
                     "change of status, which happened no later than CiviCRM's change, yet the "
                     "later date decides, as in the sync. Review them in the bucket "
                     "profile_edit_decided before approving; policy date_basis = "
                     "\"status_change\" would decide them by the status-change date.")
    unknown = int(_flagged(outcomes, "status_change_unknown").sum())
    if unknown:
        unreadable = int(meta.get("feed_unreadable") or 0)
        why = (f"{unreadable} feed(s) could not be read after retries"
               if unreadable else "the feeds were not read for these snapshots")
        lines.append(f"For {_people(unknown)} whose later Mailchimp date decides, nobody knows "
                     f"whether it was a change of status: {why} (review bucket "
                     "status_change_unknown; take both snapshots again).")
    return lines


def date_evidence_people(outcomes: pd.DataFrame) -> pd.DataFrame:
    """The rows a profile edit decided, with the three dates and the reason."""
    import pandas as pd

    rows = outcomes[_flagged(outcomes, "profile_edit_decided")]

    def day(v) -> str:
        return "" if v is None or pd.isna(v) else f"{pd.Timestamp(v):%Y-%m-%d %H:%M:%S}"

    return pd.DataFrame([{
        "Email": r["email"] or "", "Mailchimp last change": day(r["mailchimp_changed"]),
        "Mailchimp status changed": day(r["mailchimp_status_changed"]),
        "CiviCRM changed": day(r["civicrm_changed"]), "Outcome": r["outcome"],
        "Reason": r["reason"],
    } for r in rows.to_dict("records")], columns=["Email", "Mailchimp last change",
                                                  "Mailchimp status changed", "CiviCRM changed",
                                                  "Outcome", "Reason"])
