"""`check`: can both systems be reached and read as configured?

Returns a `CheckResult`, one entry per check with its status (ok, warning or error) and the
facts it found; the CLI puts them in words. Checks run in order and stop at the first error
(what follows depends on it, or would only repeat it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from civimc_audit.civicrm.db import connect
from civimc_audit.civicrm.dump import find_client
from civimc_audit.civicrm.reader import find_group, find_mapped_groups
from civimc_audit.config import Config
from civimc_audit.errors import CiviCRMError, CivimcError
from civimc_audit.mailchimp.client import MailchimpClient
from civimc_audit.mailchimp.interests import read_catalogue

CIVICRM_TABLES = ("civicrm_contact", "civicrm_email", "civicrm_group", "civicrm_group_contact",
                  "civicrm_subscription_history")


@dataclass(frozen=True)
class CheckEntry:
    """One check: its name, status ("ok", "warning" or "error") and facts (for an error, the
    exception to report)."""

    name: str
    status: str
    facts: dict = field(default_factory=dict)
    error: CivimcError | None = None


@dataclass
class CheckResult:
    entries: list[CheckEntry] = field(default_factory=list)

    @property
    def error(self) -> CivimcError | None:
        """The problem that stopped the checks, if one did."""
        return next((e.error for e in self.entries if e.status == "error"), None)

    def add(self, name: str, status: str = "ok", /, **facts) -> None:
        self.entries.append(CheckEntry(name, status, facts))


def check(config: Config) -> CheckResult:
    """Check CiviCRM's tables, group, transport and write account, then Mailchimp's API and
    audience."""
    result = CheckResult()
    for step in (_civicrm, _writer, _mailchimp, _interests):
        try:
            step(config, result)
        except CivimcError as exc:
            result.entries.append(CheckEntry(step.__name__.strip("_"), "error", error=exc))
            break
    return result


def _civicrm(config: Config, result: CheckResult) -> None:
    conn = connect(config.civicrm)
    try:
        with conn.cursor() as cur:
            for table in CIVICRM_TABLES:
                try:
                    cur.execute(f"SELECT 1 FROM {table} LIMIT 1")
                    cur.fetchall()
                except Exception as exc:  # pymysql raises several kinds here
                    raise CiviCRMError(f"CiviCRM user '{config.civicrm.user}' cannot read "
                                       f"{table}: {exc.args[-1] if exc.args else exc}") from None
            group = find_group(cur, config.civicrm)
    finally:
        conn.close()
    result.add("civicrm_tables", user=config.civicrm.user, tables=len(CIVICRM_TABLES))
    result.add("civicrm_group", group_id=group.id, title=group.title)
    if not group.is_mailing_list:
        result.add("civicrm_mailing_list", "warning", group_id=group.id, title=group.title)
    result.add("civicrm_transport", client=find_client())


def _writer(config: Config, result: CheckResult) -> None:
    result.add("civicrm_writer", user=config.civicrm.write_user, state=check_writer(config))


def _mailchimp(config: Config, result: CheckResult) -> None:
    client = MailchimpClient(config.mailchimp)
    try:
        client.ping()
        result.add("mailchimp_api", url=client.base_url)
        info = client.get_list(config.mailchimp.list_id)
        members = client.get(f"/lists/{config.mailchimp.list_id}/members", count=1,
                             fields="total_items")
    finally:
        client.close()
    result.add("mailchimp_audience", list_id=info["id"], name=info.get("name", ""),
               members=members.get("total_items", 0))


def _interests(config: Config, result: CheckResult) -> None:
    """Each [interests] mapping with the interest's name and category and the group's title;
    a mapped interest the audience lacks is a warning (its rows get rule I1), a missing or smart
    group an error."""
    if not config.interests:
        return
    conn = connect(config.civicrm)
    try:
        with conn.cursor() as cur:
            groups = find_mapped_groups(cur, config.civicrm.database, config.interests)
    finally:
        conn.close()
    client = MailchimpClient(config.mailchimp)
    try:
        catalogue = {i["interest_id"]: i for i in read_catalogue(client, config.mailchimp.list_id)}
    finally:
        client.close()
    for interest, gid in config.interests.items():
        known = catalogue.get(interest)
        facts = {"interest_id": interest, "group_id": gid, "group_title": groups[gid].title,
                 "interest_name": known["interest_name"] if known else None,
                 "category": known["category_title"] if known else None,
                 "list_id": config.mailchimp.list_id}
        result.add("interest_mapping", "ok" if known else "warning", **facts)


# What the writer needs (README "Applying an approved plan"), table by table.
WRITER_PRIVILEGES = {
    "civicrm_group_contact": ("SELECT", "INSERT", "UPDATE"),
    "civicrm_subscription_history": ("SELECT", "INSERT"),
    "civicrm_contact": ("SELECT", "INSERT"),
    "civicrm_email": ("SELECT", "INSERT", "UPDATE"),
}

_GRANTEE = ("CONCAT('\\'', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '\\'@\\'',"
            " SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '\\'')")


def check_writer(config: Config) -> str:
    """The write account's state: "not_configured" (no write_user), "not_checked" (its
    password is not in the environment) or "ok"; raises naming the missing privileges.

    Read from information_schema (global, database and table grants of the account itself);
    privileges that come only through a role are not seen and are reported as missing.
    """
    settings = config.civicrm
    if not settings.write_user:
        return "not_configured"
    if not settings.write_password:
        return "not_checked"
    conn = connect(settings, write=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT privilege_type FROM information_schema.USER_PRIVILEGES"
                        f" WHERE grantee = {_GRANTEE}")
            granted = {("*", p) for (p,) in cur.fetchall()}
            cur.execute(f"SELECT privilege_type FROM information_schema.SCHEMA_PRIVILEGES"
                        f" WHERE grantee = {_GRANTEE} AND %s LIKE table_schema",
                        (settings.database,))
            granted |= {("*", p) for (p,) in cur.fetchall()}
            cur.execute(f"SELECT table_name, privilege_type FROM information_schema.TABLE_PRIVILEGES"
                        f" WHERE grantee = {_GRANTEE} AND table_schema = %s", (settings.database,))
            granted |= set(cur.fetchall())
    finally:
        conn.close()
    missing = [f"{p} on {table}" for table, privs in WRITER_PRIVILEGES.items() for p in privs
               if ("*", p) not in granted and (table, p) not in granted
               and ("*", "ALL PRIVILEGES") not in granted]
    if missing:
        raise CiviCRMError(f"CiviCRM write account '{settings.write_user}' lacks "
                           f"{', '.join(missing)} (see README for the grants)", misconfigured=True)
    return "ok"

