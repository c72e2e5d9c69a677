"""The case notation of civimc_sandbox.population: small named worlds and the rows they must get.

A **case** is a small world — CiviCRM contacts and Mailchimp members — with the outcome rows the
rules must give it, written in a compact notation so a table of cases reads like the rules table:

    Case("seed_barney", civi="a +1", mc="a unsubscribed 2",
         expect="a remove_from_civicrm_group R2")

``civi`` — contacts separated by ``;``; each is space-separated tokens:
  * an email: a one-letter label (``a``), optionally ``:`` and qualifiers — ``p`` primary,
    ``b`` bulk-mail, ``h`` on hold (bounce), ``o`` on hold (opt-out), ``U`` stored upper-case,
    ``S`` stored with surrounding spaces, ``W`` stored with other whitespace around it (a tab,
    a no-break space, a line break: SQL's trim() keeps these). The first email is primary unless
    another says ``p``.
  * a membership change written the way core writes it: ``+D`` added, ``-D`` removed, ``?D``
    pending, ``xD`` deleted (row gone, 'Deleted' history), where ``D`` is a day of January
    (10:00 UTC) or ``D@HH:MM[:SS]``, or ``0``: a history row with no usable date (a zero date);
  * ``gc=Added|Removed|Pending``: only a group_contact row, no history (a direct-SQL import);
  * ``trashed``, ``do_not_email``, ``opt_out``, ``deceased``.
``mc`` — members separated by ``;``: ``label[:U] status [D[@HH:MM[:SS]]]``.
``expect`` — outcome rows separated by ``;``: ``who outcome rule [reason_code] [flag ...]
[=#N] [->label]`` where ``who`` is a member's email label or ``#N`` (the N-th contact's own row,
1-based), ``=#N`` says which contact the row is for and ``->label`` which address it names.
``policy`` — ``""``, ``"tie_winner=mailchimp"`` or ``"honor_civicrm_consent"``.

Interest groups (DESIGN "Interest groups", rules I1–I6) use one upper-case letter per mapped
interest (population.INTERESTS: ``V`` Volunteering, ``Q`` Quarry campaign, each mapped to its
own CiviCRM group): in ``civi``, ``V+D`` ``V-D`` ``V?D`` ``VxD`` are changes of the contact's membership of
V's group (as above) and ``V=Added|Removed|Pending`` a group_contact row there with no history;
in ``mc``, ``V=1`` / ``V=0`` is the member's entry for V (none: no entry). ``iexpect`` — interest
rows separated by ``;``: ``who KEY outcome rule [reason_code]``. A person whose subscription row
gets interest rows (R1, R3, R5, R6, R7 when they stay subscribed) and whose member has no entry
for an interest gets I1 for it without saying so; an entry needs its row written out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from civimc_audit.common.codes import MEMBER_DEFECT_CODES
from civimc_audit.common.codes import REASON_CODES as ALL_REASON_CODES

YEAR = 2026
#: The rules table's reason codes (a member record's defects cannot be written in the notation:
#: the emulator sends those only when a test garbles a member, see Emulator.garbled).
REASON_CODES = tuple(c for c in ALL_REASON_CODES if c not in MEMBER_DEFECT_CODES)
FLAGS = ("duplicate_contacts", "contact_deleted", "consent_conflict", "civicrm_pending",
         "no_civicrm_history", "needs_confirmation", "email_differs")
MC_STATUSES = ("subscribed", "pending", "unsubscribed", "cleaned", "archived", "transactional")
POLICIES = {"": {}, "tie_winner=mailchimp": {"tie_winner": "mailchimp"},
            "honor_civicrm_consent": {"honor_civicrm_consent": True}}
_EVENT = {"+": "Added", "-": "Removed", "?": "Pending", "x": "Deleted"}
_CONTACT_WORDS = {"trashed", "do_not_email", "opt_out", "deceased"}
_GC_STATUSES = ("Added", "Removed", "Pending")
#: Rules whose people get interest rows, when their outcome leaves them subscribed.
INTEREST_RULES_FOR = ("R1", "R3", "R5", "R6", "R7")
SUBSCRIBED_OUTCOMES = ("no_change", "add_to_civicrm_group", "add_to_mailchimp",
                       "resubscribe_in_mailchimp")
INTEREST_RULES = ("I1", "I2", "I3", "I4", "I5", "I6")


# -- the notation ------------------------------------------------------------------------------
@dataclass(frozen=True)
class EmailSpec:
    label: str
    primary: bool = False
    bulk: bool = False
    on_hold: int = 0
    upper: bool = False
    spaced: bool = False
    whitespace: bool = False


@dataclass(frozen=True)
class ContactSpec:
    emails: tuple[EmailSpec, ...] = ()
    events: tuple[tuple[str, datetime], ...] = ()   # (Added|Removed|Pending|Deleted, when)
    gc_only: str | None = None                       # group_contact row without history
    interest_events: tuple[tuple[str, str, datetime | None], ...] = ()  # (key, status, when)
    interest_gc: tuple[tuple[str, str], ...] = ()    # (key, status): group_contact, no history
    trashed: bool = False
    do_not_email: bool = False
    opt_out: bool = False
    deceased: bool = False


@dataclass(frozen=True)
class MemberSpec:
    label: str
    status: str
    last_changed: datetime
    upper: bool = False
    interests: tuple[tuple[str, bool], ...] = ()     # (key, value): the member's entries


@dataclass(frozen=True)
class Expected:
    """One outcome row the rules must give."""

    who: str                      # member email label, or "#N" for contact N's own row
    outcome: str
    rule: str
    reason_code: str = ""
    flags: frozenset = frozenset()
    contact: int | None = None    # 1-based contact index the row is for (None: not checked)
    email: str | None = None      # label of the address the row names (None: not checked)

    @property
    def winner(self) -> str:
        return "mailchimp" if self.rule in ("R1", "R2", "R3", "R4") else "civicrm"

    @property
    def gets_interest_rows(self) -> bool:
        return self.rule in INTEREST_RULES_FOR and self.outcome in SUBSCRIBED_OUTCOMES


@dataclass(frozen=True)
class ExpectedInterest:
    """One interest row the rules must give: `who` (as Expected.who) × the interest `key`."""

    who: str
    key: str
    outcome: str
    rule: str
    reason_code: str = ""


def when(token: str, year: int = YEAR) -> datetime | None:
    """``D`` or ``D@HH:MM[:SS]`` as a UTC datetime in January of `year`; ``0`` is no date."""
    if token == "0":
        return None
    day, _, clock = token.partition("@")
    parts = [int(p) for p in (clock or "10:00").split(":")] + [0]
    return datetime(year, 1, int(day), parts[0], parts[1], parts[2], tzinfo=UTC)


def parse_civi(text: str) -> tuple[ContactSpec, ...]:
    contacts = []
    for chunk in (c.strip() for c in text.split(";")):
        if not chunk:
            continue
        emails, events, kw = [], [], {}
        for tok in chunk.split():
            if tok in _CONTACT_WORDS:
                kw["opt_out" if tok == "opt_out" else tok] = True
            elif tok.startswith("gc="):
                kw["gc_only"] = tok[3:]
            elif m := re.fullmatch(r"([A-Z])([-+?x])(\d[\d@:]*)", tok):
                kw.setdefault("interest_events", []).append(
                    (m[1], _EVENT[m[2]], when(m[3])))
            elif m := re.fullmatch(r"([A-Z])=(" + "|".join(_GC_STATUSES) + ")", tok):
                kw.setdefault("interest_gc", []).append((m[1], m[2]))
            elif tok[0] in _EVENT and len(tok) > 1 and tok[1].isdigit():
                events.append((_EVENT[tok[0]], when(tok[1:])))
            elif re.fullmatch(r"[a-z](:[pbhoUSW]+)?", tok):
                label, _, q = tok.partition(":")
                emails.append(EmailSpec(label, "p" in q, "b" in q,
                                        1 if "h" in q else 2 if "o" in q else 0,
                                        "U" in q, "S" in q, "W" in q))
            else:
                raise ValueError(f"bad CiviCRM token {tok!r} in {text!r}")
        if emails and not any(e.primary for e in emails):
            emails[0] = EmailSpec(**{**emails[0].__dict__, "primary": True})
        kw.update({k: tuple(kw[k]) for k in ("interest_events", "interest_gc") if k in kw})
        contacts.append(ContactSpec(tuple(emails), tuple(events), **kw))
    return tuple(contacts)


def parse_mc(text: str) -> tuple[MemberSpec, ...]:
    members = []
    for chunk in (c.strip() for c in text.split(";")):
        if not chunk:
            continue
        label, status, *rest = chunk.split()
        if status not in MC_STATUSES:
            raise ValueError(f"bad Mailchimp status {status!r} in {text!r}")
        lab, _, q = label.partition(":")
        entries = tuple((t[0], t[2] == "1") for t in rest if re.fullmatch(r"[A-Z]=[01]", t))
        dates = [t for t in rest if not re.fullmatch(r"[A-Z]=[01]", t)]
        if len(dates) > 1:
            raise ValueError(f"bad Mailchimp member {chunk!r} in {text!r}")
        members.append(MemberSpec(lab, status, when(dates[0] if dates else "1"), "U" in q,
                                  entries))
    return tuple(members)


def parse_iexpect(text: str) -> tuple[ExpectedInterest, ...]:
    rows = []
    for chunk in (c.strip() for c in text.split(";")):
        if not chunk:
            continue
        who, key, outcome, rule, *rest = chunk.split()
        if not re.fullmatch(r"[A-Z]", key) or rule not in INTEREST_RULES or len(rest) > 1:
            raise ValueError(f"bad interest expectation {chunk!r} in {text!r}")
        rows.append(ExpectedInterest(who, key, outcome, rule, rest[0] if rest else ""))
    return tuple(rows)


def parse_expect(text: str) -> tuple[Expected, ...]:
    rows = []
    for chunk in (c.strip() for c in text.split(";")):
        if not chunk:
            continue
        who, outcome, rule, *rest = chunk.split()
        reason, flags, contact, email = "", set(), None, None
        for tok in rest:
            if tok in REASON_CODES:
                reason = tok
            elif tok in FLAGS:
                flags.add(tok)
            elif tok.startswith("=#"):
                contact = int(tok[2:])
            elif tok.startswith("->"):
                email = tok[2:]
            else:
                raise ValueError(f"bad expectation token {tok!r} in {text!r}")
        rows.append(Expected(who, outcome, rule, reason, frozenset(flags), contact, email))
    return tuple(rows)


@dataclass(frozen=True)
class Case:
    """A named small world and the outcome rows it must get."""

    name: str
    civi: str = ""
    mc: str = ""
    expect: str = ""
    policy: str = ""
    iexpect: str = ""
    contacts: tuple[ContactSpec, ...] = field(init=False)
    members: tuple[MemberSpec, ...] = field(init=False)
    expected: tuple[Expected, ...] = field(init=False)
    interest_expected: tuple[ExpectedInterest, ...] = field(init=False)

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r} in case {self.name}")
        object.__setattr__(self, "contacts", parse_civi(self.civi))
        object.__setattr__(self, "members", parse_mc(self.mc))
        object.__setattr__(self, "expected", parse_expect(self.expect))
        object.__setattr__(self, "interest_expected", parse_iexpect(self.iexpect))
        self._check_interest_expectations()

    def _check_interest_expectations(self) -> None:
        """Rows only for people who get them, and one for every entry such a member has."""
        eligible = {e.who for e in self.expected if e.gets_interest_rows}
        written = {(e.who, e.key) for e in self.interest_expected}
        if len(written) != len(self.interest_expected):
            raise ValueError(f"case {self.name}: an interest row written twice")
        if stray := {who for who, _ in written} - eligible:
            raise ValueError(f"case {self.name}: {sorted(stray)} get no interest rows")
        for m in self.members:
            if m.label in eligible and (missing := {k for k, _ in m.interests
                                                    if (m.label, k) not in written}):
                raise ValueError(f"case {self.name}: member {m.label} has entries for "
                                 f"{sorted(missing)} but no interest row for them")

    def interest_rows(self, keys: Iterable[str]) -> tuple[ExpectedInterest, ...]:
        """The interest rows for the mapped interests `keys`: those written in ``iexpect``, and
        I1 (no entry) for every other person who gets rows."""
        written = {(e.who, e.key): e for e in self.interest_expected}
        return tuple(written.get((e.who, k)) or ExpectedInterest(
            e.who, k, "no_change", "I1", "no_interest_data")
            for e in self.expected if e.gets_interest_rows for k in keys)

    @classmethod
    def of(cls, name: str, contacts: Sequence[ContactSpec], members: Sequence[MemberSpec]) -> Case:
        """A world given as specs (e.g. drawn by hypothesis), with no expectation."""
        case = cls(name)
        object.__setattr__(case, "contacts", tuple(contacts))
        object.__setattr__(case, "members", tuple(members))
        return case
