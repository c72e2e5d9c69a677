"""The scheduled `run` gathers date evidence after both snapshots, and a standing approval never
sends a change a profile edit decided (docs/design.md "Date evidence"), end to end: MariaDB, the
emulator over HTTP, papermill executing the report."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from support.values import TEST_LIST_ID

from civimc_audit.mailchimp.client import member_hash

YEAR = datetime.now(UTC).year - 1


def at(day: int) -> datetime:
    return datetime(YEAR, 1, day, 12, tzinfo=UTC)


def test_run_reads_feeds_and_standing_approval_holds_profile_edit_rows(civi_db, emulator,
                                                                      make_config, run_cli):
    f, gid = civi_db.fixture, civi_db.group_id
    # Edited: removed in CiviCRM on 3 Jan; subscribed at Mailchimp on 2 Jan, name edited 5 Jan.
    edited = f.contact("Edited", "Name", email="edited@example.org")
    f.add_to_group(edited, gid, at(1))
    f.remove_from_group(edited, gid, at(3))
    # Fresh: removed in CiviCRM on 3 Jan; subscribed at Mailchimp on 4 Jan (a real change).
    fresh = f.contact("Fresh", "Signup", email="fresh@example.org")
    f.add_to_group(fresh, gid, at(1))
    f.remove_from_group(fresh, gid, at(3))
    f.commit()
    emulator.add_member(TEST_LIST_ID, "edited@example.org", "subscribed", last_changed=at(5),
                        activity=[{"activity_type": "generic_signup",
                                   "created_at_timestamp": at(2).isoformat()}])
    emulator.add_member(TEST_LIST_ID, "fresh@example.org", "subscribed", last_changed=at(5),
                        activity=[{"activity_type": "generic_signup",
                                   "created_at_timestamp": at(4).isoformat()}])
    config = make_config('\n[schedule]\nauto_approve = ["add_to_civicrm_group"]\n')
    code, out, err = run_cli("--config", config, "run", "--apply")
    assert code == 0, err
    feeds = [r.path.split("/")[-2] for r in emulator.requests
             if r.path.endswith("/activity-feed")]
    # The run reads both feeds; the apply's verify reads Edited's again (still contested) and
    # not Fresh's (added to the group by the apply, it now agrees).
    assert sorted(feeds) == sorted([member_hash("edited@example.org")] * 2
                                   + [member_hash("fresh@example.org")])
    folder = sorted(p for p in (config.parent / "runs").iterdir() if p.name[0].isdigit())[-1]
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    assert summary["waiting_for_review"] == {"add_to_civicrm_group": 1}
    civi_db.conn.commit()
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT contact_id, status FROM civicrm_group_contact WHERE group_id = %s",
                    (gid,))
        states = dict(cur.fetchall())
    assert states == {edited: "Removed", fresh: "Added"}  # only the real change was applied
