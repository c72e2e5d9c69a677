"""Populations of people for the reconciliation: small named worlds, and generated crowds of them.

A **case** is a small world — CiviCRM contacts and Mailchimp members — with the outcome rows the
rules must give it, written in a compact notation (civimc_sandbox.notation, re-exported here) so
a table of cases reads like the rules table:

    Case("seed_barney", civi="a +1", mc="a unsubscribed 2",
         expect="a remove_from_civicrm_group R2")

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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from tqdm.auto import tqdm

from civimc_audit.common.emails import SQL_WHITESPACE_CLASS, install_sql_macros, member_hash
from civimc_sandbox.notation import (  # noqa: F401  (re-exported: the population's notation)
    FLAGS,
    INTEREST_RULES,
    INTEREST_RULES_FOR,
    MC_STATUSES,
    POLICIES,
    REASON_CODES,
    SUBSCRIBED_OUTCOMES,
    YEAR,
    Case,
    ContactSpec,
    EmailSpec,
    Expected,
    ExpectedInterest,
    MemberSpec,
    parse_civi,
    parse_expect,
    parse_iexpect,
    parse_mc,
    when,
)

_CATEGORY_ID = "c0a1b2c3d4"  # the interest category's id in a store written by write_store


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
    events = [(groups[""], ev, inst.at(m)) for ev, m in c.events]
    gc_only = [(groups[""], c.gc_only)] if c.gc_only else []
    if population.interests:
        if unmapped := {k for k, *_ in (*c.interest_events, *c.interest_gc)} - set(groups):
            raise ValueError(f"case {inst.case.name}: the population maps no interest "
                             f"{', '.join(sorted(unmapped))}")
        events += [(groups[k], ev, inst.at(m)) for k, ev, m in c.interest_events]
        gc_only += [(groups[k], st) for k, st in c.interest_gc]
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
            member = {
                "id": member_hash(address),
                "email_address": address, "status": m.status,
                "last_changed": inst.at(m.last_changed).astimezone(UTC).replace(tzinfo=None),
                "fname": inst.case.name, "lname": inst.slug}
            if population.interests:
                member["interests"] = (json.dumps(_interests_json(population, m),
                                                  separators=(",", ":")) if m.interests else None)
            rows["mailchimp_member"].append(member)
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
            interests = "interests" if population.interests else "NULL"
            con.register("_f", frames["mailchimp_member"])
            con.execute(
                f"INSERT INTO mailchimp_member (snapshot_id, id, email_address, status,"
                f" last_changed, merge_fields, interests) SELECT {mc},"
                f" CASE WHEN k = 0 THEN id ELSE member_hash({prefix} || email_address) END,"
                f" {prefix} || email_address, status, last_changed,"
                f" json_object('FNAME', fname, 'LNAME', lname), {interests}::VARCHAR"
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
