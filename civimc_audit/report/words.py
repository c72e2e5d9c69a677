"""Outcome rows in words, as the seed page's table puts them ("subscribed 1 Jan",
"gets removed from Mailchimp"), for reports and the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from civimc_audit.common.codes import OUTCOME_ORDER, REASON_HELP, code_help

if TYPE_CHECKING:  # pandas is imported where it is used: `civimc-audit report`'s own
    import pandas as pd  # process (run_report) never needs it

OUTCOME_WORDS = {
    "add_to_mailchimp": "gets added to Mailchimp",
    "resubscribe_in_mailchimp": "gets resubscribed in Mailchimp",
    "unsubscribe_in_mailchimp": "gets removed from Mailchimp",
    "add_to_civicrm_group": "gets added to CiviCRM",
    "remove_from_civicrm_group": "gets removed from CiviCRM group",
    "cannot_sync": "cannot be synced",
    "no_change": "no change",
}

OUTCOME_HEADLINES = {  # (after "1 person", after "N people")
    "remove_from_civicrm_group": ("would be removed from the CiviCRM group",) * 2,
    "unsubscribe_in_mailchimp": ("would be unsubscribed in Mailchimp",) * 2,
    "cannot_sync": ("cannot be synced and needs a person to look at them",
                    "cannot be synced and need a person to look at them"),
    "add_to_mailchimp": ("would be added to Mailchimp",) * 2,
    "resubscribe_in_mailchimp": ("would be resubscribed in Mailchimp",) * 2,
    "add_to_civicrm_group": ("would be added to the CiviCRM group",) * 2,
    "no_change": ("needs no change", "need no change"),
}

# A cannot_sync row's reason in a few words (the review buckets use the sentences beside them).
REASON_WORDS = {code: words for code, (words, _sentence) in REASON_HELP.items()}

# The chart and the "what would happen" lines use the same words.
OUTCOME_LABELS = {code: plural for code, (_singular, plural) in OUTCOME_HEADLINES.items()}

# A group membership without history, by its status.
GROUP_STATES = {"Added": "in group", "Removed": "removed", "Pending": "pending",
                "Deleted": "deleted"}

HISTORY_VERBS = {"Added": "added", "Removed": "removed", "Pending": "pending",
                 "Deleted": "deleted"}


def short_date(when, year: int | None = None) -> str:
    """'1 Jan' within `year`, else '1 Jan 2025'."""
    import pandas as pd

    if when is None or pd.isna(when):
        return ""
    when = pd.Timestamp(when).to_pydatetime()
    text = f"{when.day} {when:%b}"
    return text if year is not None and when.year == year else f"{text} {when.year}"


def mailchimp_words(row, year: int | None = None) -> str:
    import pandas as pd

    status = row.get("mailchimp_status")
    if status is None or pd.isna(status):
        return "(does not exist)"
    date = short_date(row.get("mailchimp_changed"), year)
    return f"{status} {date}".strip()


def civicrm_words(row, year: int | None = None) -> str:
    import pandas as pd

    if row.get("contact_id") is None or pd.isna(row.get("contact_id")):
        return "(does not exist)"
    hist = row.get("civicrm_history_status")
    status = row.get("civicrm_status")
    if (hist is None or pd.isna(hist)) and (status is None or pd.isna(status)):
        return "never in group"
    if hist is None or pd.isna(hist):  # a group row but not one history row
        return f"{GROUP_STATES.get(str(status), str(status).lower())}, no history at all"
    verb = HISTORY_VERBS.get(hist, str(hist).lower())
    date = short_date(row.get("civicrm_changed"), year)
    return f"{verb} {date}" if date else f"{verb}, history date blank"


def outcome_words(row) -> str:
    import pandas as pd

    outcome = row["outcome"]
    flags = (row.get("flags") or "").split()
    if outcome == "no_change":
        return "stays subscribed" if row.get("rule") in ("R1", "R5") else "stays unsubscribed"
    if outcome == "cannot_sync":
        why = REASON_WORDS.get(row.get("reason_code"), row.get("reason_code") or "")
        return f"cannot be synced ({why})" if why else "cannot be synced"
    text = OUTCOME_WORDS[outcome]
    if outcome == "add_to_civicrm_group" and (row.get("contact_id") is None
                                             or pd.isna(row.get("contact_id"))):
        text += " (as a new contact)"
    if "needs_confirmation" in flags:
        text += " (they are asked to confirm)"
    return text


def _text(value) -> str:
    import pandas as pd

    return "" if value is None or value is pd.NA or (not isinstance(value, str) and pd.isna(value)) \
        else str(value).strip()


def who(row) -> str:
    """The person's name (CiviCRM's, else Mailchimp's), else their address, else the contact id."""
    return (_text(row.get("display_name")) or _text(row.get("email"))
            or (f"contact {int(row['contact_id'])}" if _text(row.get("contact_id")) else ""))


def flag_words(flags) -> str:
    """The row's flags in words ("duplicate contacts; asked to confirm"), blank for none."""
    return "; ".join(code_help(code)[0] for code in _text(flags).split())


def why(row) -> str:
    """The reason sentence, first letter up."""
    text = _text(row.get("reason"))
    return text[:1].upper() + text[1:]


PEOPLE_COLUMNS = ["Who", "Email", "Mailchimp", "CiviCRM", "Outcome", "Why", "Flags"]


def people_table(frame: pd.DataFrame, year: int | None = None) -> pd.DataFrame:
    """The seed's table, Who | Email | Mailchimp | CiviCRM | Outcome | Why | Flags, removals
    first (then by person)."""
    import pandas as pd

    year = year if year is not None else datetime.now().year
    rows = frame.to_dict("records")
    order = {o: i for i, o in enumerate(OUTCOME_ORDER)}
    rows.sort(key=lambda r: (order.get(r["outcome"], 99), r.get("person_id") or 0))
    return pd.DataFrame([{
        "Who": who(r), "Email": _text(r.get("email")), "Mailchimp": mailchimp_words(r, year),
        "CiviCRM": civicrm_words(r, year), "Outcome": outcome_words(r), "Why": why(r),
        "Flags": flag_words(r.get("flags")),
    } for r in rows], columns=PEOPLE_COLUMNS)


def mailing_list_warning(group_id, title) -> str:
    """The one-line warning for an audited group that is not marked as a mailing list."""
    return (f"warning: CiviCRM group {group_id} '{title}' is not marked as a mailing list; "
            "the sync extension only offers mailing-list groups (set its group type to "
            "Mailing List if this is the right group)")


def interest_mapping_line(f: dict) -> str:
    """One [interests] mapping as `check` reports it."""
    group = f"CiviCRM group {f['group_id']} '{f['group_title']}'"
    if f["interest_name"] is None:
        return (f"warning: interest {f['interest_id']} does not exist in audience "
                f"{f['list_id']}; its mapping to {group} is skipped (rule I1) until it does")
    return (f"Interests: '{f['interest_name']}' ({f['category']}, {f['interest_id']}) "
            f"= {group}")


def check_line(entry) -> str:
    """One `check` entry (check.CheckEntry, not an error) in words."""
    from civimc_audit.config import ENV_CIVICRM_WRITE_PASSWORD

    f = entry.facts
    if entry.name == "civicrm_tables":
        return f"CiviCRM: can read {f['tables']} tables as '{f['user']}'"
    if entry.name == "civicrm_group":
        return f"CiviCRM: group {f['group_id']} '{f['title']}' is a normal group"
    if entry.name == "civicrm_mailing_list":
        return mailing_list_warning(f["group_id"], f["title"])
    if entry.name == "civicrm_transport":
        return (f"CiviCRM: snapshots stream through the command-line client {f['client']}"
                if f["client"] else
                "CiviCRM: snapshots read in server-packed chunks (install the mariadb or mysql "
                "command-line client for faster snapshots)")
    if entry.name == "civicrm_writer":
        return {"not_configured": "CiviCRM: no write_user configured (needed only to apply a plan)",
                "not_checked": f"CiviCRM: write account '{f['user']}' not checked "
                               f"({ENV_CIVICRM_WRITE_PASSWORD} is not set)",
                "ok": f"CiviCRM: write account '{f['user']}' has the privileges apply needs",
                }[f["state"]]
    if entry.name == "interest_mapping":
        return interest_mapping_line(f)
    if entry.name == "mailchimp_api":
        return f"Mailchimp: API at {f['url']} answers"
    return (f"Mailchimp: audience {f['list_id']} '{f['name']}' exists; "
            f"its members can be read ({f['members']} of any status)")
