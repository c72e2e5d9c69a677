"""The seed page's five people (README's first table), written to both sides with its dates.

Wilma, Barney, Fred, Betty and Pebbles each show one rule of "whichever side changed later
wins"; the demo loads them, and many tests start from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from civimc_sandbox.civicrm.fixture import CiviFixture
from civimc_sandbox.emulator import Emulator


@dataclass(frozen=True)
class SeedPerson:
    """One row of the seed page's table, as dates on each side."""

    first: str
    mailchimp: tuple[str, int] | None          # (status, day of January)
    civicrm: tuple[tuple[str, int], ...]       # history as (Added|Removed, day); month below
    expected: str


def jan(day: int, year: int, hour: int = 10) -> datetime:
    """A January date; days ≤ 0 fall back into the previous December."""
    if day <= 0:
        return datetime(year - 1, 12, 31 + day, hour, tzinfo=UTC)
    return datetime(year, 1, day, hour, tzinfo=UTC)


SEED = (
    SeedPerson("Wilma", ("subscribed", 1), (("Added", 5),), "stays subscribed"),
    SeedPerson("Barney", ("unsubscribed", 2), (("Added", 1),), "gets removed from CiviCRM group"),
    SeedPerson("Fred", ("subscribed", 3), (("Added", -20), ("Removed", 4)),
               "gets removed from Mailchimp"),
    SeedPerson("Betty", None, (("Added", 4),), "gets added to Mailchimp"),
    SeedPerson("Pebbles", ("subscribed", 1), (), "gets added to CiviCRM"),
)


def seed_email(first: str) -> str:
    return f"{first.lower()}@bedrock.example.org"


def load_seed(fixture: CiviFixture, group_id: int, emu: Emulator, list_id: str,
              year: int) -> dict[str, int]:
    """Write the five seed people to both sides; returns contact ids by first name."""
    ids = {}
    for person in SEED:
        last = "Rubble" if person.first in ("Barney", "Betty") else "Flintstone"
        cid = fixture.contact(person.first, last, email=seed_email(person.first))
        ids[person.first] = cid
        for status, day in person.civicrm:
            if status == "Added":
                fixture.add_to_group(cid, group_id, jan(day, year))
            else:
                fixture.remove_from_group(cid, group_id, jan(day, year))
        if person.mailchimp:
            status, day = person.mailchimp
            emu.add_member(list_id, seed_email(person.first), status=status,
                           last_changed=jan(day, year),
                           merge_fields={"FNAME": person.first, "LNAME": last})
    fixture.commit()
    return ids
