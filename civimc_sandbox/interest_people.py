"""People for the interest rules (I1–I6): two Mailchimp interests mapped to two CiviCRM groups,
and one named person per case, written the way CiviCRM core writes group changes. The
interests, their groups and their category are the generated population's (`population.INTERESTS`).

The demo loads them beside the seed (its audience then has the category "Get involved" with
"Volunteering" and "Quarry campaign", mapped in its [interests]), so `outcomes --interests` and
the report's interest section show every interest rule. Each person is subscribed on both sides
of the newsletter (so they get interest rows), except Pebbles-like ones that R3 creates.
"""

from __future__ import annotations

from datetime import UTC, datetime

from civimc_sandbox.civicrm.fixture import CiviFixture
from civimc_sandbox.emulator import Emulator
from civimc_sandbox.population import INTERESTS, add_interest_catalogue, create_interest_groups

VOLUNTEERING, QUARRY = (i.id for i in INTERESTS)

#: name → (Mailchimp last_changed day, {interest: value (None: no entry)}, CiviCRM events per
#: interest as [(Added|Removed|Pending|gc=Status, day)], the rule each interest gets)
CASES = {
    "Gazoo": (5, {VOLUNTEERING: True, QUARRY: False}, {VOLUNTEERING: [("Added", 2)]},
              ("I2", "I2")),
    "Slate": (5, {VOLUNTEERING: True, QUARRY: True},
              {VOLUNTEERING: [("Added", 1), ("Removed", 2)], QUARRY: [("Added", 2)]},
              ("I3", "I2")),
    "Tex": (5, {VOLUNTEERING: False, QUARRY: False},
            {VOLUNTEERING: [("Added", 2)], QUARRY: [("gc=Added", 0)]}, ("I4", "I4")),
    "Rockhead": (2, {VOLUNTEERING: False, QUARRY: True},
                 {VOLUNTEERING: [("Added", 5)], QUARRY: [("Added", 1), ("Removed", 6)]},
                 ("I5", "I6")),
    "Hatrock": (2, {VOLUNTEERING: True, QUARRY: False},
                {VOLUNTEERING: [("Pending", 5)]}, ("I6", "I2")),
    "Arnold": (3, {}, {VOLUNTEERING: [("Added", 1)]}, ("I1", "I1")),
    "Stony": (None, {}, {QUARRY: [("Added", 3)]}, ("I1", "I1")),
    "Sandstone": (4, {VOLUNTEERING: True, QUARRY: False}, None, ("I3", "I2")),
}


def _when(year: int, day: int, hour: int = 10) -> datetime:
    return datetime(year, 1, day, hour, tzinfo=UTC)


def load_interest_people(fixture: CiviFixture, group_id: int, emu: Emulator, list_id: str,
                         year: int) -> dict[str, int]:
    """The two groups, the interest category and the people of CASES; returns the [interests]
    mapping (interest id → CiviCRM group id). `None` events (Sandstone) means no contact at all:
    R3 creates one, and Mailchimp decides each interest."""
    groups = create_interest_groups(fixture)
    add_interest_catalogue(emu, list_id)
    for name, (day, interests, events, _) in CASES.items():
        email = f"{name.lower()}@bedrock.example.org"
        if events is not None:
            cid = fixture.contact(name, "Bedrock", email=email)
            fixture.add_to_group(cid, group_id, _when(year, 1, 9))
            for interest, changes in events.items():
                for status, d in changes:
                    gid = groups[interest]
                    if status.startswith("gc="):
                        fixture.set_membership(cid, gid, status[3:])
                    elif status == "Added":
                        fixture.add_to_group(cid, gid, _when(year, d))
                    elif status == "Removed":
                        fixture.remove_from_group(cid, gid, _when(year, d))
                    else:
                        fixture.pending(cid, gid, _when(year, d))
        if day is not None:
            emu.add_member(list_id, email, "subscribed", last_changed=_when(year, day),
                           merge_fields={"FNAME": name, "LNAME": "Bedrock"},
                           interests=interests)
    fixture.commit()
    return groups
