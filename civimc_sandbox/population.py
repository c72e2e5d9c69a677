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

`generate(n, seed)` instantiates the `ARCHETYPES` (every rule, reason code and flag) into a
deterministic population of at least n people, each instance with its own addresses and its
dates shifted as a block (which keeps every comparison, so the expected outcome still holds).
It loads into CiviCRM through `CiviFixture` and into the emulator with `load_people`, or
straight into an audit store with `write_store` (benchmarks, property tests).
"""

from __future__ import annotations

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
        members.append(MemberSpec(lab, status, when(rest[0] if rest else "1"), "U" in q))
    return tuple(members)


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
    contacts: tuple[ContactSpec, ...] = field(init=False)
    members: tuple[MemberSpec, ...] = field(init=False)
    expected: tuple[Expected, ...] = field(init=False)

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r} in case {self.name}")
        object.__setattr__(self, "contacts", parse_civi(self.civi))
        object.__setattr__(self, "members", parse_mc(self.mc))
        object.__setattr__(self, "expected", parse_expect(self.expect))

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
    """Case instances, in a deterministic order."""

    instances: list[Instance]
    seed: int = 0

    @property
    def people(self) -> int:
        return sum(i.people for i in self.instances)

    def expected_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for inst in self.instances:
            for e in inst.case.expected:
                counts[e.outcome] = counts.get(e.outcome, 0) + 1
        return counts


def instantiate(cases: Sequence[Case], *, prefix: str = "p", seed: int = 0,
                shift_days: int = 0) -> Population:
    """Each case once, with slug ``<prefix><index>`` and (with `shift_days`) a random block shift."""
    rng = random.Random(seed)
    instances = []
    for i, case in enumerate(cases):
        shift = (timedelta(days=rng.randrange(shift_days), seconds=rng.randrange(86_400))
                 if shift_days else timedelta(0))
        instances.append(Instance(case, f"{prefix}{i:06d}", shift))
    return Population(instances, seed)


def generate(n: int, seed: int = 0, cases: Sequence[Case] = ARCHETYPES,
             prefix: str = "gen") -> Population:
    """At least `n` people: every case once, then cases drawn at random (deterministic in
    `seed`), each shifted by up to 300 days so dates spread over the year."""
    rng = random.Random(seed)
    chosen = list(cases)
    people = sum(len(c.expected) for c in chosen)
    while people < n:
        case = rng.choice(cases)
        chosen.append(case)
        people += len(case.expected)
    return instantiate(chosen, prefix=prefix, seed=seed, shift_days=300)


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


def load_civicrm(fixture, group_id: int, population: Population, *,
                 progress: bool = False) -> None:
    """Write every instance's contacts through `CiviFixture`, the way CiviCRM core writes them;
    fills each instance's `contact_ids`."""
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
            for status, moment in c.events:
                step = {"Added": fixture.add_to_group, "Removed": fixture.remove_from_group,
                        "Pending": fixture.pending, "Deleted": fixture.delete_from_group}[status]
                step(cid, group_id, inst.at(moment))
            if c.gc_only:
                fixture.set_membership(cid, group_id, c.gc_only)
    fixture.commit()


def member_dicts(population: Population) -> Iterable[dict]:
    for inst in population.instances:
        for m in inst.case.members:
            yield {"email_address": _stored(inst.address(m.label), m), "status": m.status,
                   "last_changed": inst.at(m.last_changed).isoformat(),
                   "merge_fields": {"FNAME": inst.case.name, "LNAME": inst.slug}}


def load_mailchimp(emulator, list_id: str, population: Population) -> int:
    """Load every instance's members into the emulator's audience."""
    return emulator.load_members(list_id, member_dicts(population))


def load_people(fixture, group_id: int, emulator, list_id: str, population: Population,
                progress: bool = False) -> None:
    load_civicrm(fixture, group_id, population, progress=progress)
    load_mailchimp(emulator, list_id, population)


def expected_rows(population: Population) -> list[tuple[Instance, Expected]]:
    return [(inst, e) for inst in population.instances for e in inst.case.expected]


# -- straight into the audit store -------------------------------------------------------------
def snapshot_frames(population: Population, group_id: int = 1, *,
                    first_contact_id: int = 1) -> dict[str, list[dict]]:
    """The snapshot tables' rows for `population`, with ids assigned here (fills
    `contact_ids`), as the two snapshots would hold them."""
    rows: dict[str, list[dict]] = {t: [] for t in (
        "civicrm_contact", "civicrm_email", "civicrm_group_contact",
        "civicrm_subscription_history", "mailchimp_member")}
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
            status = c.gc_only
            for ev, moment in c.events:
                rows["civicrm_subscription_history"].append({
                    "id": hid, "contact_id": cid, "group_id": group_id,
                    "date": (None if moment is None
                             else inst.at(moment).astimezone(UTC).replace(tzinfo=None)),
                    "method": "Admin", "status": ev})
                hid += 1
                status = None if ev == "Deleted" else ev
            if c.gc_only:
                status = c.gc_only
            if status:
                rows["civicrm_group_contact"].append({"id": gid, "group_id": group_id,
                                                      "contact_id": cid, "status": status})
                gid += 1
            cid += 1
        for m in inst.case.members:
            address = _stored(inst.address(m.label), m)
            rows["mailchimp_member"].append({
                "id": member_hash(address),
                "email_address": address, "status": m.status,
                "last_changed": inst.at(m.last_changed).astimezone(UTC).replace(tzinfo=None),
                "fname": inst.case.name, "lname": inst.slug})
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
    how a million people are written in seconds."""
    import pandas as pd

    frames = {t: pd.DataFrame(r) for t, r in snapshot_frames(population, group_id).items()}
    if order_seed is not None:
        frames = {t: f.sample(frac=1, random_state=order_seed).reset_index(drop=True)
                  for t, f in frames.items()}
    stride = max([len(frames["civicrm_contact"]), len(frames["civicrm_email"]),
                  len(frames["civicrm_subscription_history"]), 1]) + 1
    con = store.con
    install_sql_macros(con)
    civi = store.begin_snapshot("civicrm", {"group_id": group_id, "group_name": "generated",
                                            "group_title": "Generated", "is_mailing_list": True,
                                            "generated": True})
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
                f" last_changed, merge_fields) SELECT {mc},"
                f" CASE WHEN k = 0 THEN id ELSE member_hash({prefix} || email_address) END,"
                f" {prefix} || email_address, status, last_changed,"
                f" json_object('FNAME', fname, 'LNAME', lname)"
                f" FROM _copies, _f ORDER BY k")
            con.unregister("_f")
        con.execute("INSERT INTO mailchimp_list VALUES (?, ?, 'Generated', NULL, NULL)",
                    [mc, list_id])
    store.finish_snapshot(civi)
    store.finish_snapshot(mc)
    return civi, mc
