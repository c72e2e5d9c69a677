"""Issue 15 point 1: the sizes the report shows are the real ones: the CiviCRM group's members
(contacts whose membership is Added, trashed contacts left out: what CiviCRM's own group count
shows) and the audience's members by status, not the number of people compared."""

from __future__ import annotations

from datetime import UTC, datetime

from support.apply import cli_ok
from support.values import TEST_LIST_ID

from civimc_audit import AuditReport
from civimc_audit.config import load_config


def jan(day: int) -> datetime:
    return datetime(2026, 1, day, 12, tzinfo=UTC)


def test_the_group_and_audience_sizes_are_the_real_ones(civi_db, emulator, make_config,
                                                        run_cli):
    fx, group = civi_db.fixture, civi_db.group_id
    for n in range(3):  # in the group
        fx.add_to_group(fx.contact(f"In{n}", "Group", email=f"in{n}@example.org"), group, jan(1))
    fx.remove_from_group(fx.contact("Was", "Removed", email="gone@example.org"), group, jan(2))
    fx.pending(fx.contact("Not", "Yet", email="pend@example.org"), group, jan(2))
    fx.add_to_group(fx.contact("In", "Trash", email="trash@example.org", is_deleted=True),
                    group, jan(1))
    fx.contact("Never", "Member", email="never@example.org")
    fx.commit()
    for email, status in [("in0@example.org", "subscribed"), ("gone@example.org", "unsubscribed"),
                          ("other@example.org", "subscribed"), ("x@example.org", "cleaned")]:
        emulator.add_member(TEST_LIST_ID, email, status=status, last_changed=jan(3))
    config = make_config()
    cli_ok(run_cli, config, "snapshot")
    cli_ok(run_cli, config, "reconcile")

    report = AuditReport.load(config=load_config(config))
    assert report.sizes == {"group": 3, "audience": {"subscribed": 2, "cleaned": 1,
                                                     "unsubscribed": 1}}
    assert report.total > 3  # more people are compared than are in the group
    members = report.compared().set_index("Side")["Members"]
    assert members["CiviCRM group"] == "3 in the group"
    assert members["Mailchimp audience"] == "2 subscribed, 1 cleaned, 1 unsubscribed"
