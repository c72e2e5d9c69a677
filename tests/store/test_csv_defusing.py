"""Issue 19 point 2: every CSV the toolkit writes defuses spreadsheet formulas the same way
(common/csvcells.py), and a defused CSV read back gives the original values."""

from __future__ import annotations

import csv
import io

import duckdb
import pytest
from support.apply import cli_ok
from support.values import TEST_LIST_ID

from civimc_audit.changes.plan import items_frame
from civimc_audit.common.csvcells import FORMULA_STARTS, defuse, defuse_sql, restore
from civimc_audit.config import load_config
from civimc_audit.report.audit import write_people_csv
from civimc_audit.store import Store
from civimc_sandbox.demo import jan

YEAR = 2026
HOSTILE = ["=SUM(A1:A9)", "+1", "-2", "@cmd", "\tTabbed", "\rReturned", "'quoted", "''two",
           "'=guarded", "plain", "", "=", "'"]
# (first name, last name, email) of contacts in the group; each starts with a formula start.
PEOPLE = [("=HYPERLINK(\"http://evil.example\",\"x\")", "+Plus", "+1@f.example"),
          ("-Minus", "@At", "=eq@f.example"),
          ("\tTab", "\rReturn", "-dash@f.example"),
          ("@Ann", "=Bee", "@at@f.example")]
# Members (email, first name) at Mailchimp only: they become R3 adds.
MEMBERS = [("+plus.member@f.example", "=cmd|' /C calc'!A0"), ("tab.member@f.example", "\tTab")]


def starts_formula(cell: str) -> bool:
    return cell.startswith(FORMULA_STARTS)


def csv_rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


@pytest.mark.parametrize("value", HOSTILE)
def test_defuse_then_restore_gives_the_value_back(value):
    cell = defuse(value)
    assert not starts_formula(cell)
    assert restore(cell) == value


def test_the_sql_guard_is_the_python_guard():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (v VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?)", [[v] for v in [*HOSTILE, None]])
    got = [r[0] for r in con.execute(f"SELECT {defuse_sql('v')} FROM t").fetchall()]
    assert got == [defuse(v) for v in [*HOSTILE, None]]


@pytest.fixture
def hostile(civi_db, emulator, make_config):
    f, g = civi_db.fixture, civi_db.group_id
    for first, last, email in PEOPLE:
        f.add_to_group(f.contact(first, last, email=email), g, jan(3, YEAR))
    f.commit()
    for email, first in MEMBERS:
        emulator.add_member(TEST_LIST_ID, email, status="subscribed", last_changed=jan(4, YEAR),
                            merge_fields={"FNAME": first, "LNAME": "-Last"})
    return make_config()


def assert_defused(rows: list[dict], where: str) -> None:
    for row in rows:
        for key, cell in row.items():
            assert not starts_formula(key), (where, key)
            assert not starts_formula(cell or ""), (where, key, cell)


def test_every_csv_is_defused_and_review_round_trips(hostile, run_cli, tmp_path):
    config = hostile
    for cmd in (["snapshot"], ["reconcile"], ["plan"]):
        cli_ok(run_cli, config, *cmd)
    store_file = load_config(config).store_file

    # outcomes --format csv: defused, and restored it is what the store holds.
    rows = csv_rows(cli_ok(run_cli, config, "outcomes", "--format", "csv"))
    assert_defused(rows, "outcomes")
    with Store(store_file, read_only=True) as store:
        emails = {r[0] or "" for r in store.con.execute("SELECT email FROM outcomes").fetchall()}
    assert {restore(r["email"]) for r in rows} == emails
    assert {e for _, _, e in PEOPLE} | {e for e, _ in MEMBERS} <= emails
    # The report's people.csv (written beside audit.html) is the same rows, as defused.
    people = tmp_path / "people.csv"
    write_people_csv(load_config(config), None, people)
    with people.open(newline="", encoding="utf-8") as fh:
        assert list(csv.DictReader(fh)) == rows

    # review --export, then --import: decisions recorded, values unchanged.
    path = tmp_path / "review.csv"
    cli_ok(run_cli, config, "review", "--export", path)
    with open(path, newline="", encoding="utf-8") as fh:
        exported = list(csv.DictReader(fh))
    assert_defused(exported, "review export")
    for r in exported:
        r["decision"], r["note"] = "approve", "=looks odd, fine"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(exported[0]))
        writer.writeheader()
        writer.writerows(exported)
    cli_ok(run_cli, config, "review", "--import", path, "--reviewer", "-Ada")
    with Store(store_file, read_only=True) as store:
        items = items_frame(store, 1)
    assert set(items["decision"]) == {"approved"}
    assert set(items["note"]) == {"=looks odd, fine"}
    assert set(items["reviewer"]) == {"-Ada"}
    assert {restore(r["display_name"]) for r in exported} == set(items["display_name"].fillna(""))
    assert any(n.startswith("=HYPERLINK(") for n in items["display_name"])

    # export --format csv of both snapshots (the audience's import CSV included).
    for snap_id in (1, 2):
        out = cli_ok(run_cli, config, "export", snap_id, "--format", "csv", "--out",
                     tmp_path / f"export{snap_id}")
        for name in out.split():
            with open(name, newline="", encoding="utf-8") as fh:
                assert_defused(list(csv.DictReader(fh)), name)
    with open(tmp_path / "export2" / "mailchimp-import.csv", newline="", encoding="utf-8") as fh:
        imported = list(csv.DictReader(fh))
    assert {restore(r["First Name"]) for r in imported} == {first for _, first in MEMBERS}

    # apply's backup import file and its journal.csv.
    cli_ok(run_cli, config, "approve", "--freeze", "--reviewer", "Ada")
    run_cli("--config", config, "apply", "--execute", "--no-verify")
    (folder,) = (tmp_path / "runs").glob("apply-plan1-*")
    for name in ["journal.csv", *[str(p.relative_to(folder))
                                  for p in folder.glob("backup/*/*.csv")]]:
        with open(folder / name, newline="", encoding="utf-8") as fh:
            got = list(csv.DictReader(fh))
        assert got, name
        assert_defused(got, name)
