"""Issue 19 point 4, the CiviCRM side: odd addresses and rows snapshot and reconcile without a
crash, and every person still gets their row — none dropped."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from support.apply import cli_ok
from support.values import TEST_LIST_ID

from civimc_audit.config import load_config
from civimc_audit.store import Store
from civimc_sandbox.demo import jan

YEAR = 2026
LONG = ("a" * 64 + "." + "b" * 60 + "@" + "c" * 60 + "." + "d" * 60 + ".example")[:250]
ODD = {
    "long": LONG,
    "idn": "jürgen.müller@bücher.example",
    "quotes": "\"o'brien\"@example.org",
    "markup": "<script>alert(1)</script>@example.org",
    "spaces": "  Padded@Example.ORG  ",
}


def test_odd_addresses_and_rows_snapshot_and_reconcile(civi_db, emulator, make_config, run_cli):
    f, g = civi_db.fixture, civi_db.group_id
    assert len(LONG) == 250
    ids = {}
    for name, email in ODD.items():
        ids[name] = f.contact(name.title(), "Odd", email=email)
        f.add_to_group(ids[name], g, jan(3, YEAR))
    # A contact whose only address row has no address at all (NULL), in the group.
    ids["null"] = f.contact("Nul", "Address")
    f._exec("INSERT INTO civicrm_email (contact_id, location_type_id, email, is_primary)"
            " VALUES (%s, 1, NULL, 1)", (ids["null"],))
    f.add_to_group(ids["null"], g, jan(3, YEAR))
    # One contact with 50 addresses; the 30th is the bulk-mail one.
    ids["many"] = f.contact("Many", "Addresses")
    for n in range(50):
        f.email(ids["many"], f"many{n}@example.org", is_primary=n == 0, is_bulkmail=n == 30)
    f.add_to_group(ids["many"], g, jan(3, YEAR))
    # History (and a membership) of a group that no longer exists, as old sites without the
    # foreign keys keep them; and a history row without a group.
    f._exec("SET FOREIGN_KEY_CHECKS = 0")
    f._exec("INSERT INTO civicrm_subscription_history (contact_id, group_id, date, method, status)"
            " VALUES (%s, 987654, %s, 'Admin', 'Added')", (ids["many"], jan(2, YEAR)))
    f._exec("INSERT INTO civicrm_subscription_history (contact_id, group_id, date, method, status)"
            " VALUES (%s, NULL, %s, 'Admin', 'Removed')", (ids["idn"], jan(4, YEAR)))
    f._exec("INSERT INTO civicrm_group_contact (group_id, contact_id, status)"
            " VALUES (987654, %s, 'Added')", (ids["long"],))
    f._exec("SET FOREIGN_KEY_CHECKS = 1")
    f.commit()
    emulator.add_member(TEST_LIST_ID, ODD["idn"], status="subscribed", last_changed=jan(1, YEAR))
    config = make_config()

    cli_ok(run_cli, config, "snapshot")
    cli_ok(run_cli, config, "reconcile")
    rows = list(csv.DictReader(io.StringIO(cli_ok(run_cli, config, "outcomes", "--format",
                                                  "csv"), newline="")))
    by_contact = {}
    for r in rows:
        by_contact.setdefault(r["contact_id"], []).append(r)
    for name, cid in ids.items():  # every contact in the group has its one row
        assert len(by_contact.get(str(cid), [])) == 1, (name, by_contact.get(str(cid)))
    with Store(load_config(config).store_file, read_only=True) as store:
        emails = {r[0] for r in store.con.execute("SELECT email FROM civicrm_email").fetchall()}
        many = store.con.execute("SELECT count(*) FROM civicrm_email WHERE contact_id = ?",
                                 [ids["many"]]).fetchone()[0]
    assert set(ODD.values()) | {None} <= emails  # stored as CiviCRM holds them
    assert many == 50
    (many_row,) = by_contact[str(ids["many"])]
    assert many_row["email"] == "many30@example.org"  # the bulk-mail address is the best
    assert by_contact[str(ids["long"])][0]["email"] == LONG
    (null_row,) = by_contact[str(ids["null"])]
    assert null_row["outcome"] == "cannot_sync" and null_row["reason_code"] == "no_usable_email"
    cli_ok(run_cli, config, "plan")
    out = cli_ok(run_cli, config, "report")
    html = Path(out.split("report: ", 1)[1].strip()).read_text(encoding="utf-8")
    assert "jürgen.müller@bücher.example" in html
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)" in html
