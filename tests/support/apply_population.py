"""A small population with every rule (R1–R10), every cannot_sync reason that apply meets, a
new contact, a duplicate, a member without CiviCRM history, a compliance refusal and an
address Mailchimp refuses as fake — written to CiviCRM the way core writes it and into the
emulator. (issue 3's generated population module was not on main when this was written.)"""

from __future__ import annotations

from civimc_sandbox.demo import jan, load_seed

YEAR = 2026


def load_every_rule(fixture, group_id: int, emu, list_id: str) -> dict[str, int]:
    """Returns contact ids by a short name; the seed's five people are included."""
    ids = load_seed(fixture, group_id, emu, list_id, YEAR)
    f, g = fixture, group_id

    def member(email, status, day, first=None, last=None, **extra):
        merge = {k: v for k, v in (("FNAME", first), ("LNAME", last)) if v}
        emu.add_member(list_id, email, status=status, last_changed=jan(day, YEAR),
                       merge_fields=merge or None, **extra)

    # R1: Mailchimp later, both in.
    ids["r1"] = f.contact("Rita", "One", email="r1@example.org")
    f.add_to_group(ids["r1"], g, jan(1, YEAR))
    member("r1@example.org", "subscribed", 5)
    # R4: Mailchimp later, both out.
    ids["r4"] = f.contact("Rob", "Four", email="r4@example.org")
    f.add_to_group(ids["r4"], g, jan(-5, YEAR))
    f.remove_from_group(ids["r4"], g, jan(1, YEAR))
    member("r4@example.org", "unsubscribed", 5)
    # R7: CiviCRM later and in; member unsubscribed (compliance: only pending is possible).
    ids["r7"] = f.contact("Ruth", "Seven", email="r7@example.org")
    f.add_to_group(ids["r7"], g, jan(5, YEAR))
    member("r7@example.org", "unsubscribed", 1)
    # R7 archived (was subscribed): can be resubscribed.
    ids["r7a"] = f.contact("Rex", "Archived", email="r7a@example.org")
    f.add_to_group(ids["r7a"], g, jan(5, YEAR))
    member("r7a@example.org", "archived", 1)
    # R7 email on hold -> cannot_sync.
    ids["hold"] = f.contact("Hal", "Hold")
    f.email(ids["hold"], "hold@example.org", is_primary=True, on_hold=1)
    f.add_to_group(ids["hold"], g, jan(5, YEAR))
    member("hold@example.org", "unsubscribed", 1)
    # R8 cleaned -> cannot_sync.
    ids["r8"] = f.contact("Cleo", "Cleaned", email="r8@example.org")
    f.add_to_group(ids["r8"], g, jan(5, YEAR))
    member("r8@example.org", "cleaned", 1)
    # R10: CiviCRM later, both out; and out/absent.
    ids["r10"] = f.contact("Ray", "Ten", email="r10@example.org")
    f.add_to_group(ids["r10"], g, jan(-5, YEAR))
    f.remove_from_group(ids["r10"], g, jan(5, YEAR))
    member("r10@example.org", "unsubscribed", 1)
    ids["r10b"] = f.contact("Rae", "Absent", email="r10b@example.org")
    f.add_to_group(ids["r10b"], g, jan(-5, YEAR))
    f.remove_from_group(ids["r10b"], g, jan(5, YEAR))
    # R6 more adds, and R6 with no usable email -> cannot_sync.
    for n in range(3):
        ids[f"add{n}"] = f.contact("Ann", f"Add{n}", email=f"add{n}@example.org")
        f.add_to_group(ids[f"add{n}"], g, jan(6, YEAR))
    ids["nomail"] = f.contact("Nomi", "Nomail")
    f.email(ids["nomail"], "bounced@example.org", is_primary=True, on_hold=1)
    f.add_to_group(ids["nomail"], g, jan(6, YEAR))
    # R3 without a contact: a new contact gets created.
    member("nova@example.org", "subscribed", 3, "Nova", "Newman")
    # In the group without history; Mailchimp decides (R2), flagged no_civicrm_history.
    ids["nohist"] = f.contact("Nia", "History", email="nohist@example.org")
    f.set_membership(ids["nohist"], g, "Added")
    member("nohist@example.org", "unsubscribed", 2)
    # Two contacts own one address (duplicate_contacts); Mailchimp later and subscribed.
    ids["dup1"] = f.contact("Dee", "Dup", email="dup@example.org")
    ids["dup2"] = f.contact("Dee", "Duplicate", email="dup@example.org")
    member("dup@example.org", "subscribed", 4)
    f.commit()
    return ids


def add_fake_address(fixture, group_id: int) -> int:
    """A contact in the group whose address Mailchimp refuses as fake (a per-member error)."""
    cid = fixture.contact("Fay", "Fake", email="fay@example.invalid")
    fixture.add_to_group(cid, group_id, jan(7, YEAR))
    fixture.commit()
    return cid
