"""Populations of people for the reconciliation: small named worlds, and generated crowds of them.

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
interest (`INTERESTS`: ``V`` Volunteering, ``Q`` Quarry campaign, each mapped to its own CiviCRM
group): in ``civi``, ``V+D`` ``V-D`` ``V?D`` ``VxD`` are changes of the contact's membership of
V's group (as above) and ``V=Added|Removed|Pending`` a group_contact row there with no history;
in ``mc``, ``V=1`` / ``V=0`` is the member's entry for V (none: no entry). ``iexpect`` — interest
rows separated by ``;``: ``who KEY outcome rule [reason_code]``. A person whose subscription row
gets interest rows (R1, R3, R5, R6, R7 when they stay subscribed) and whose member has no entry
for an interest gets I1 for it without saying so; an entry needs its row written out.

`generate(n, seed)` instantiates the `ARCHETYPES` (every rule, reason code and flag) into a
deterministic population of at least n people, each instance with its own addresses and its
dates shifted as a block (which keeps every comparison, so the expected outcome still holds).
It loads into CiviCRM through `CiviFixture` and into the emulator with `load_people`, or
straight into an audit store with `write_store` (benchmarks, property tests).
`generate(..., interests=True)` adds the `INTEREST_ARCHETYPES` (every rule I1–I6) and the two
mapped interests: the loaders then also write the interest catalogue, the members' interests
and the mapped groups' rows, and `expected_interest_rows` gives every interest row's outcome.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tqdm.auto import tqdm

from civimc_audit.common.codes import MEMBER_DEFECT_CODES
from civimc_audit.common.codes import REASON_CODES as ALL_REASON_CODES
from civimc_audit.common.emails import SQL_WHITESPACE_CLASS, install_sql_macros, member_hash

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
_CATEGORY_ID = "c0a1b2c3d4"  # the interest category's id in a store written by write_store
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


# -- the archetypes: every rule, reason code and flag ------------------------------------------
ARCHETYPES: tuple[Case, ...] = (
    Case("wilma", "a +5", "a subscribed 1", "a no_change R5"),
    Case("barney", "a +1", "a unsubscribed 2", "a remove_from_civicrm_group R2"),
    Case("fred", "a +1 -4", "a subscribed 3", "a unsubscribe_in_mailchimp R9"),
    Case("betty", "a +4", "", "#1 add_to_mailchimp R6"),
    Case("pebbles", "a", "a subscribed 1", "a add_to_civicrm_group R3"),
    Case("both_in_mc_later", "a +1", "a pending 2", "a no_change R1"),
    Case("new_contact", "", "a subscribed 2", "a add_to_civicrm_group R3"),
    Case("both_out_mc_later", "a +1 -2", "a unsubscribed 3", "a no_change R4"),
    Case("resubscribe", "a +3", "a unsubscribed 2",
         "a resubscribe_in_mailchimp R7 needs_confirmation"),
    Case("revive_archived", "a +3", "a archived 2", "a resubscribe_in_mailchimp R7"),
    Case("cleaned", "a +3", "a cleaned 2", "a cannot_sync R8 cleaned_at_mailchimp"),
    Case("removed_both_out", "a +1 -3", "a unsubscribed 2", "a no_change R10"),
    Case("removed_absent", "a +1 -3", "", "#1 no_change R10"),
    Case("other_email_subscribed", "a b +1", "a unsubscribed 2; b subscribed 2",
         "a cannot_sync R2 other_email_subscribed; b no_change R1 email_differs"),
    Case("no_usable_email", "a:h +1", "", "#1 cannot_sync R6 no_usable_email"),
    Case("shared_email", "a +1; a +2", "a subscribed 3",
         "a no_change R1 duplicate_contacts =#1;"
         " #2 cannot_sync R6 email_shared_with_other_contact duplicate_contacts"),
    Case("same_new_address", "a +1; a:U +2", "",
         "#1 add_to_mailchimp R6 duplicate_contacts;"
         " #2 cannot_sync R6 email_shared_with_other_contact duplicate_contacts"),
    Case("on_hold", "a:h +3", "a archived 2", "a cannot_sync R7 email_on_hold"),
    Case("trashed_subscriber", "a +1 trashed", "a subscribed 2",
         "a add_to_civicrm_group R3 contact_deleted"),
    Case("consent", "a +1 do_not_email", "a subscribed 2", "a no_change R1 consent_conflict"),
    Case("civi_pending", "a ?3", "a subscribed 2", "a unsubscribe_in_mailchimp R9 civicrm_pending"),
    Case("no_history", "a gc=Added", "a unsubscribed 2",
         "a remove_from_civicrm_group R2 no_civicrm_history"),
    Case("prefers_bulk", "a b:b +1", "a subscribed 2", "a no_change R1 email_differs"),
    Case("tie", "a +2", "a transactional 2", "a resubscribe_in_mailchimp R7"),
    Case("other_email_rejoins", "a b +1 -2", "a subscribed 3; b subscribed 1",
         "a add_to_civicrm_group R3; b cannot_sync R9 other_email_subscribed email_differs"),
    Case("undated_history", "a +0", "a unsubscribed 2", "a cannot_sync R2 no_history_date"),
    Case("whitespace_email", "a:W +3", "a unsubscribed 2",
         "a resubscribe_in_mailchimp R7 needs_confirmation =#1"),
)



# -- interest groups: the mapped interests and the archetypes of I1–I6 -------------------------
@dataclass(frozen=True)
class Interest:
    """A Mailchimp interest that a population maps to a CiviCRM group of its own."""

    key: str            # its letter in the notation
    id: str
    name: str
    group_name: str
    group_title: str


INTEREST_CATEGORY = "Get involved"
INTERESTS = (Interest("V", "9f8e7d6c5b", "Volunteering", "volunteers", "Volunteers"),
             Interest("Q", "1a2b3c4d5e", "Quarry campaign", "quarry_campaign",
                      "Quarry campaigners"))

#: Every interest rule, the per-group winner against the subscription's, Pending and Deleted
#: memberships, a tie, an undated history, a contact R3 creates, a member R6 adds, and people
#: left unsubscribed (no interest rows).
INTEREST_ARCHETYPES: tuple[Case, ...] = (
    Case("i_agree", "a +1 V+2", "a subscribed 5 V=1 Q=0", "a no_change R1",
         iexpect="a V no_change I2; a Q no_change I2"),
    Case("i_mc_adds", "a +1 V+1 V-2", "a subscribed 5 V=1 Q=0", "a no_change R1",
         iexpect="a V add_to_civicrm_group I3; a Q no_change I2"),
    Case("i_mc_removes", "a +1 V+2 Q=Added", "a subscribed 5 V=0 Q=0", "a no_change R1",
         iexpect="a V remove_from_civicrm_group I4; a Q remove_from_civicrm_group I4"),
    Case("i_civi_decides", "a +1 V+5 Q+1 Q-6", "a subscribed 2 V=0 Q=1", "a no_change R1",
         iexpect="a V set_interest_in_mailchimp I5; a Q clear_interest_in_mailchimp I6"),
    Case("i_civi_pending", "a +1 V?5", "a subscribed 2 V=1 Q=0", "a no_change R1",
         iexpect="a V clear_interest_in_mailchimp I6; a Q no_change I2"),
    Case("i_civi_deleted", "a +1 V+1 Vx3", "a subscribed 2 V=1 Q=0", "a no_change R1",
         iexpect="a V clear_interest_in_mailchimp I6; a Q no_change I2"),
    Case("i_mapped_since", "a +1 V+1", "a subscribed 3 V=1", "a no_change R1",
         iexpect="a V no_change I2"),
    Case("i_new_member", "a +1 Q+3", "", "#1 add_to_mailchimp R6"),
    Case("i_new_contact", "", "a subscribed 4 V=1 Q=0", "a add_to_civicrm_group R3",
         iexpect="a V add_to_civicrm_group I3; a Q no_change I2"),
    Case("i_tie", "a +1 V-5@10:00", "a subscribed 5@10:00 V=1 Q=0", "a no_change R1",
         iexpect="a V clear_interest_in_mailchimp I6; a Q no_change I2"),
    Case("i_undated", "a +1 V+0", "a subscribed 5 V=0 Q=0", "a no_change R1",
         iexpect="a V cannot_sync I4 no_history_date; a Q no_change I2"),
    Case("i_resubscribe", "a +3 V+4", "a unsubscribed 2 V=0 Q=0",
         "a resubscribe_in_mailchimp R7 needs_confirmation",
         iexpect="a V set_interest_in_mailchimp I5; a Q no_change I2"),
    Case("i_civi_later_mc_decides", "a +5 V+1", "a subscribed 3 V=0 Q=1", "a no_change R5",
         iexpect="a V remove_from_civicrm_group I4; a Q add_to_civicrm_group I3"),
    Case("i_leaving", "a +1 V+1", "a unsubscribed 5 V=1 Q=1", "a remove_from_civicrm_group R2"),
    Case("i_civi_leaves", "a +1 -5 V+1", "a subscribed 2 V=0", "a unsubscribe_in_mailchimp R9"),
)


def create_interest_groups(fixture, interests: Sequence[Interest] = INTERESTS) -> dict[str, int]:
    """One CiviCRM group per interest, through `CiviFixture`; returns interest id → group id."""
    return {i.id: fixture.group(i.group_name, i.group_title) for i in interests}


def add_interest_catalogue(emulator, list_id: str,
                           interests: Sequence[Interest] = INTERESTS) -> None:
    """The audience's category `INTEREST_CATEGORY` with those of `interests` it lacks."""
    known = set(emulator.list_state(list_id).catalogue.ids())
    missing = [(i.id, i.name) for i in interests if i.id not in known]
    if missing:
        emulator.add_interest_category(list_id, INTEREST_CATEGORY, missing)


# -- instances ---------------------------------------------------------------------------------
@dataclass
class Instance:
    """One case placed in a population: its addresses, its time shift, and (once loaded) ids."""

    case: Case
    slug: str
    shift: timedelta
    contact_ids: list[int] = field(default_factory=list)

    def address(self, label: str) -> str:
        return f"{self.slug}.{label}@example.org"

    def at(self, moment: datetime | None) -> datetime | None:
        return None if moment is None else moment + self.shift

    @property
    def people(self) -> int:
        return len(self.case.expected)


@dataclass
class Population:
    """Case instances, in a deterministic order, and the interests they map (none: no interest
    data is written); `interest_groups` (interest id → CiviCRM group id) is filled on loading."""

    instances: list[Instance]
    seed: int = 0
    interests: tuple[Interest, ...] = ()
    interest_groups: dict[str, int] = field(default_factory=dict)

    @property
    def people(self) -> int:
        return sum(i.people for i in self.instances)

    def interest(self, key: str) -> Interest:
        for i in self.interests:
            if i.key == key:
                return i
        raise ValueError(f"the population maps no interest {key!r}")

    def interests_toml(self) -> str:
        """The config's ``[interests]`` table for the loaded population ("" without interests)."""
        if not self.interests:
            return ""
        return "[interests]\n" + "".join(f'"{i.id}" = {self.interest_groups[i.id]}\n'
                                         for i in self.interests)

    def expected_interest_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, e in expected_interest_rows(self):
            counts[e.outcome] = counts.get(e.outcome, 0) + 1
        return counts

    def expected_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for inst in self.instances:
            for e in inst.case.expected:
                counts[e.outcome] = counts.get(e.outcome, 0) + 1
        return counts


def instantiate(cases: Sequence[Case], *, prefix: str = "p", seed: int = 0,
                shift_days: int = 0, interests: Sequence[Interest] = ()) -> Population:
    """Each case once, with slug ``<prefix><index>`` and (with `shift_days`) a random block
    shift; `interests` are the interests the population maps."""
    rng = random.Random(seed)
    instances = []
    for i, case in enumerate(cases):
        shift = (timedelta(days=rng.randrange(shift_days), seconds=rng.randrange(86_400))
                 if shift_days else timedelta(0))
        instances.append(Instance(case, f"{prefix}{i:06d}", shift))
    return Population(instances, seed, tuple(interests))


def generate(n: int, seed: int = 0, cases: Sequence[Case] = ARCHETYPES,
             prefix: str = "gen", *, interests: bool = False) -> Population:
    """At least `n` people: every case once, then cases drawn at random (deterministic in
    `seed`), each shifted by up to 300 days so dates spread over the year. With `interests`,
    the cases include the `INTEREST_ARCHETYPES` and the population maps `INTERESTS`."""
    rng = random.Random(seed)
    if interests:
        cases = (*cases, *INTEREST_ARCHETYPES)
    chosen = list(cases)
    people = sum(len(c.expected) for c in chosen)
    while people < n:
        case = rng.choice(cases)
        chosen.append(case)
        people += len(case.expected)
    return instantiate(chosen, prefix=prefix, seed=seed, shift_days=300,
                       interests=INTERESTS if interests else ())


# -- loading through the real systems ----------------------------------------------------------
_FIRST = ("Ada", "Ben", "Cleo", "Dev", "Eve", "Finn", "Gus", "Hana", "Ivo", "Jo", "Kai", "Lea")


def _stored(address: str, spec: EmailSpec | MemberSpec) -> str:
    if spec.upper:
        address = address.upper()
    if getattr(spec, "spaced", False):
        address = f"  {address} "
    if getattr(spec, "whitespace", False):
        address = f"\t\u00a0{address}\r\n"
    return address


def _groups_of(population: Population, group_id: int) -> dict[str, int]:
    """Notation key → CiviCRM group id: "" the audited group, each mapped interest's letter its
    group (from the population's `interest_groups`)."""
    return {"": group_id, **{i.key: population.interest_groups[i.id]
                             for i in population.interests}}


def _memberships(population: Population, inst: Instance, c: ContactSpec, groups: dict):
    """The contact's membership changes as (group id, Added|Removed|Pending|Deleted, when), and
    its group_contact rows without history as (group id, status). Without interests, the
    interest groups' rows are not written (nothing maps them)."""
    def group(key: str) -> int:
        if key not in groups:
            raise ValueError(f"case {inst.case.name} uses interest {population.interest(key)}")
        return groups[key]

    events = [(groups[""], ev, inst.at(m)) for ev, m in c.events]
    gc_only = [(groups[""], c.gc_only)] if c.gc_only else []
    if population.interests:
        events += [(group(k), ev, inst.at(m)) for k, ev, m in c.interest_events]
        gc_only += [(group(k), st) for k, st in c.interest_gc]
    return events, gc_only


def load_civicrm(fixture, group_id: int, population: Population, *,
                 progress: bool = False, interest_groups: dict[str, int] | None = None) -> None:
    """Write every instance's contacts through `CiviFixture`, the way CiviCRM core writes them;
    fills each instance's `contact_ids`. A population with interests also gets their groups
    (`create_interest_groups`, unless `interest_groups` names existing ones), kept in its
    `interest_groups`."""
    if population.interests:
        population.interest_groups = dict(interest_groups or
                                          create_interest_groups(fixture, population.interests))
    groups = _groups_of(population, group_id)
    steps = {"Added": fixture.add_to_group, "Removed": fixture.remove_from_group,
             "Pending": fixture.pending, "Deleted": fixture.delete_from_group}
    for inst in tqdm(population.instances, desc="CiviCRM people", disable=not progress):
        inst.contact_ids = []
        for k, c in enumerate(inst.case.contacts, start=1):
            first = _FIRST[(len(inst.slug) + k + sum(map(ord, inst.slug))) % len(_FIRST)]
            cid = fixture.contact(first, f"{inst.case.name} {inst.slug[-4:]}#{k}",
                                  is_deleted=c.trashed, do_not_email=c.do_not_email,
                                  is_opt_out=c.opt_out, is_deceased=c.deceased)
            inst.contact_ids.append(cid)
            for e in c.emails:
                fixture.email(cid, _stored(inst.address(e.label), e), is_primary=e.primary,
                              is_bulkmail=e.bulk, on_hold=e.on_hold)
            events, gc_only = _memberships(population, inst, c, groups)
            for gid, status, moment in events:
                steps[status](cid, gid, moment)
            for gid, status in gc_only:
                fixture.set_membership(cid, gid, status)
    fixture.commit()


def _interests_json(population: Population, m: MemberSpec) -> dict[str, bool]:
    return {population.interest(k).id: v for k, v in m.interests}


def member_dicts(population: Population) -> Iterable[dict]:
    for inst in population.instances:
        for m in inst.case.members:
            d = {"email_address": _stored(inst.address(m.label), m), "status": m.status,
                 "last_changed": inst.at(m.last_changed).isoformat(),
                 "merge_fields": {"FNAME": inst.case.name, "LNAME": inst.slug}}
            if m.interests and population.interests:
                d["interests"] = _interests_json(population, m)
            yield d


def load_mailchimp(emulator, list_id: str, population: Population) -> int:
    """Load every instance's members into the emulator's audience (and, for a population with
    interests, the interests into its catalogue first)."""
    if population.interests:
        add_interest_catalogue(emulator, list_id, population.interests)
    return emulator.load_members(list_id, member_dicts(population))


def load_people(fixture, group_id: int, emulator, list_id: str, population: Population,
                progress: bool = False, interest_groups: dict[str, int] | None = None) -> None:
    load_civicrm(fixture, group_id, population, progress=progress,
                 interest_groups=interest_groups)
    load_mailchimp(emulator, list_id, population)


def expected_rows(population: Population) -> list[tuple[Instance, Expected]]:
    return [(inst, e) for inst in population.instances for e in inst.case.expected]


def expected_interest_rows(population: Population) -> list[tuple[Instance, ExpectedInterest]]:
    """Every interest row the population must get (none without interests)."""
    keys = [i.key for i in population.interests]
    return [(inst, e) for inst in population.instances for e in inst.case.interest_rows(keys)]


# -- straight into the audit store -------------------------------------------------------------
def snapshot_frames(population: Population, group_id: int = 1, *,
                    first_contact_id: int = 1) -> dict[str, list[dict]]:
    """The snapshot tables' rows for `population`, with ids assigned here (fills
    `contact_ids`), as the two snapshots would hold them: with interests, also the mapped
    groups' rows, the members' interests and the audience's catalogue (``mailchimp_interest``;
    mapped groups numbered after `group_id` unless `interest_groups` is filled already)."""
    rows: dict[str, list[dict]] = {t: [] for t in (
        "civicrm_contact", "civicrm_email", "civicrm_group_contact",
        "civicrm_subscription_history", "mailchimp_member", "mailchimp_interest")}
    if population.interests and not population.interest_groups:
        population.interest_groups = {i.id: group_id + n
                                      for n, i in enumerate(population.interests, start=1)}
    groups = _groups_of(population, group_id)
    rows["mailchimp_interest"] = [{"category_id": _CATEGORY_ID, "category_title": INTEREST_CATEGORY,
                                   "id": i.id, "name": i.name} for i in population.interests]
    cid, eid, gid, hid = first_contact_id, 1, 1, 1
    for inst in population.instances:
        inst.contact_ids = []
        for k, c in enumerate(inst.case.contacts, start=1):
            inst.contact_ids.append(cid)
            rows["civicrm_contact"].append({
                "id": cid, "contact_type": "Individual", "first_name": inst.case.name,
                "last_name": f"{inst.slug}#{k}", "display_name": f"{inst.case.name} {inst.slug}#{k}",
                "is_deleted": c.trashed, "do_not_email": c.do_not_email,
                "is_opt_out": c.opt_out, "is_deceased": c.deceased})
            for e in c.emails:
                rows["civicrm_email"].append({
                    "id": eid, "contact_id": cid, "email": _stored(inst.address(e.label), e),
                    "is_primary": e.primary, "is_bulkmail": e.bulk, "on_hold": e.on_hold,
                    "location_type_id": 1})
                eid += 1
            events, gc_only = _memberships(population, inst, c, groups)
            status: dict[int, str | None] = {}
            for group, ev, moment in events:
                rows["civicrm_subscription_history"].append({
                    "id": hid, "contact_id": cid, "group_id": group,
                    "date": None if moment is None else moment.astimezone(UTC).replace(tzinfo=None),
                    "method": "Admin", "status": ev})
                hid += 1
                status[group] = None if ev == "Deleted" else ev
            status.update(gc_only)
            for group, st in status.items():
                if st:
                    rows["civicrm_group_contact"].append({"id": gid, "group_id": group,
                                                          "contact_id": cid, "status": st})
                    gid += 1
            cid += 1
        for m in inst.case.members:
            address = _stored(inst.address(m.label), m)
            rows["mailchimp_member"].append({
                "id": member_hash(address),
                "email_address": address, "status": m.status,
                "last_changed": inst.at(m.last_changed).astimezone(UTC).replace(tzinfo=None),
                "fname": inst.case.name, "lname": inst.slug,
                "interests": (json.dumps(_interests_json(population, m), separators=(",", ":"))
                              if m.interests and population.interests else None)})
    return rows


# Leading whitespace of a stored address (kept in front of a copy's prefix), escaped for format().
_LEADING = (SQL_WHITESPACE_CLASS + "*").replace("{", "{{").replace("}", "}}")


def write_store(store, population: Population, group_id: int = 1, *,
                order_seed: int | None = None, copies: int = 1,
                list_id: str = "generated") -> tuple[int, int]:
    """Write `population` as a complete CiviCRM and Mailchimp snapshot straight into `store`
    (no MariaDB, no HTTP: for benchmarks and property tests); returns the two snapshot ids.

    `order_seed` shuffles the insertion order of every table; `copies` repeats the whole
    population that many times inside DuckDB (ids offset, addresses prefixed ``c<k>.``), which is
    how a million people are written in seconds. A population with interests also gets the
    audience's catalogue and the mapping in the CiviCRM snapshot's meta (as `snapshot` with
    ``[interests]`` records it), so `reconcile` makes its interest rows."""
    import pandas as pd

    tables = snapshot_frames(population, group_id)
    catalogue = tables.pop("mailchimp_interest")
    frames = {t: pd.DataFrame(r) for t, r in tables.items()}
    if order_seed is not None:
        frames = {t: f.sample(frac=1, random_state=order_seed).reset_index(drop=True)
                  for t, f in frames.items()}
    stride = max([len(frames["civicrm_contact"]), len(frames["civicrm_email"]),
                  len(frames["civicrm_group_contact"]),
                  len(frames["civicrm_subscription_history"]), 1]) + 1
    con = store.con
    install_sql_macros(con)
    meta = {"group_id": group_id, "group_name": "generated", "group_title": "Generated",
            "is_mailing_list": True, "generated": True}
    if population.interests:
        meta["interest_groups"] = [{"interest_id": i.id,
                                    "group_id": population.interest_groups[i.id],
                                    "title": i.group_title} for i in population.interests]
    civi = store.begin_snapshot("civicrm", meta)
    mc = store.begin_snapshot("mailchimp", {"list_id": list_id, "list_name": "Generated"})
    with store.transaction():
        con.execute("INSERT INTO civicrm_group (snapshot_id, id, name, title, group_type,"
                    " is_active, is_hidden) VALUES (?, ?, 'generated', 'Generated', ?, true,"
                    " false)", [civi, group_id, "\x012\x01"])
        con.execute("CREATE OR REPLACE TEMP TABLE _copies AS SELECT range AS k FROM range(?)",
                    [copies])
        # Copy 0 keeps the instance's addresses, so expected rows can be found by address.
        prefix = "CASE WHEN k = 0 THEN '' ELSE 'c' || k || '.' END"
        specs = {
            "civicrm_contact": (civi, "id + k * {s}, contact_type, first_name, last_name,"
                                " display_name, is_deleted, do_not_email, is_opt_out, is_deceased"),
            "civicrm_email": (civi, "id + k * {s}, contact_id + k * {s},"
                              " regexp_replace(email, '^(" + _LEADING + ")', '\\1' || "
                              + prefix + "),"
                              " is_primary, is_bulkmail, on_hold, location_type_id"),
            "civicrm_group_contact": (civi, "id + k * {s}, group_id, contact_id + k * {s},"
                                      " status"),
            "civicrm_subscription_history": (civi, "id + k * {s}, contact_id + k * {s},"
                                             " group_id, date, method, status"),
        }
        for table, (snap, cols) in specs.items():
            if frames[table].empty:
                continue
            con.register("_f", frames[table])
            con.execute(f"INSERT INTO {table} SELECT {snap}, {cols.format(s=stride)}"
                        f" FROM _copies, _f ORDER BY k")
            con.unregister("_f")
        if not frames["mailchimp_member"].empty:
            con.register("_f", frames["mailchimp_member"])
            con.execute(
                f"INSERT INTO mailchimp_member (snapshot_id, id, email_address, status,"
                f" last_changed, merge_fields, interests) SELECT {mc},"
                f" CASE WHEN k = 0 THEN id ELSE member_hash({prefix} || email_address) END,"
                f" {prefix} || email_address, status, last_changed,"
                f" json_object('FNAME', fname, 'LNAME', lname), interests::VARCHAR"
                f" FROM _copies, _f ORDER BY k")
            con.unregister("_f")
        for i in catalogue:
            con.execute("INSERT INTO mailchimp_interest (snapshot_id, category_id,"
                        " category_title, id, name) VALUES (?, ?, ?, ?, ?)",
                        [mc, i["category_id"], i["category_title"], i["id"], i["name"]])
        con.execute("INSERT INTO mailchimp_list VALUES (?, ?, 'Generated', NULL, NULL)",
                    [mc, list_id])
    store.finish_snapshot(civi)
    store.finish_snapshot(mc)
    return civi, mc
