"""Points 2 and 9 of issue 6: the review notebook (and its widget table, driven as a library)
and the apply notebook, executed headless under papermill."""

from __future__ import annotations

import json
from pathlib import Path

import papermill as pm
import pytest
from support.apply import cli_ok
from support.values import TEST_API_KEY, TEST_LIST_ID

from civimc_audit.changes.plan import items_frame
from civimc_audit.config import load_config
from civimc_audit.report.review_widget import ReviewTable
from civimc_audit.store import Store
from civimc_sandbox.demo import load_seed, seed_email

NOTEBOOKS = Path(__file__).resolve().parents[2] / "civimc_audit" / "notebooks"
YEAR = 2026


@pytest.fixture
def planned(civi_db, emulator, make_config, run_cli):
    load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)
    cid = civi_db.fixture.contact("<b>Bold</b>", "Consent", email="bold@example.org",
                                  do_not_email=True)
    civi_db.fixture.add_to_group(cid, civi_db.group_id, "2026-01-09T10:00:00+00:00")
    civi_db.fixture.commit()
    config = make_config()
    for cmd in (["snapshot"], ["reconcile"], ["plan"]):
        cli_ok(run_cli, config, *cmd)
    return config


def outputs_text(nb: dict) -> str:
    parts = []
    for cell in nb["cells"]:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") if isinstance(out.get("text"), str)
                         else "".join(out.get("text", [])))
            for kind, value in out.get("data", {}).items():
                parts.append(kind)
                parts.append(value if isinstance(value, str) else
                             "".join(value) if isinstance(value, list) else json.dumps(value))
    return "\n".join(parts)


def execute(name: str, out: Path, config: Path, **params) -> dict:
    pm.execute_notebook(str(NOTEBOOKS / name), str(out), kernel_name="python3",
                        parameters={"config_path": str(config), **params}, progress_bar=False,
                        cwd=str(config.parent))
    return json.loads(out.read_text(encoding="utf-8"))


def test_review_notebook_runs_headless_with_removals_first(planned, tmp_path):
    nb = execute("review.ipynb", tmp_path / "review.ipynb", planned, plan_id=1)
    text = outputs_text(nb)
    assert "application/vnd.jupyter.widget-view+json" in text  # the interactive table
    assert "plan 1: 5 of 5 items undecided" in text
    table = text[text.index("plan 1: 5 of 5 items undecided"):]
    order = [table.index(seed_email(n)) for n in ("Barney", "Fred")] + [
        table.index("bold@example.org"), table.index(seed_email("Betty"))]
    assert order == sorted(order)  # removals, then flagged (consent_conflict), then the rest
    assert "&lt;b&gt;Bold&lt;/b&gt;" in text and "<b>Bold</b>" not in text
    assert TEST_API_KEY.split("-")[0] not in json.dumps(nb)


def test_review_table_saves_decisions_as_they_are_made(planned):
    table = ReviewTable(str(planned), 1)
    # Removals and flagged come first in the list to select from.
    first = [label for label, _ in table.rows.options][:3]
    assert "remove_from_civicrm_group" in first[0] and "unsubscribe_in_mailchimp" in first[1]
    assert "bold@example.org" in first[2]
    # No reviewer yet: nothing is saved, and the table says why.
    table.rows.value = (table.rows.options[0][1],)
    assert table.click("approved", "selected") == 0
    assert "reviewer name" in table.status.value
    table.reviewer.value = "Ada"
    table.note.value = "checked with the branch"
    barney_id = table.rows.options[0][1]
    table.rows.value = (barney_id,)
    assert table.click("rejected", "selected") == 1
    table.note.value = ""
    table.flag.value = "consent_conflict"
    assert [o[1] for o in table.rows.options] != []
    assert table.click("rejected", "matching") == 1
    table.flag.value = ""
    table.text.value = "rubble"  # Barney and Betty
    table.decided.value = "undecided"
    assert len(table.rows.options) == 1
    assert table.click("approved", "matching") == 1
    table.text.value = ""
    table.rows.value = tuple(v for _, v in table.rows.options)  # select every undecided row
    assert table.click("approved", "selected") == 2
    with Store(load_config(planned).store_file) as store:
        items = items_frame(store, 1).set_index("email")
        vias = {r[0] for r in store.con.execute("SELECT via FROM decisions").fetchall()}
    assert (items["reviewer"] == "Ada").all() and items["decided_at"].notna().all()
    assert items.loc[seed_email("Barney"), "decision"] == "rejected"
    assert items.loc[seed_email("Barney"), "note"] == "checked with the branch"
    assert items.loc["bold@example.org", "decision"] == "rejected"
    assert set(items.loc[[seed_email(n) for n in ("Betty", "Fred", "Pebbles")], "decision"]) == {
        "approved"}
    assert vias == {"notebook"}
    # Date range: only the items whose later change falls inside it.
    table.decided.value = ""
    table.since.value = __import__("datetime").date(YEAR, 1, 9)
    assert [label.split()[-1] for label, _ in table.rows.options] == ["bold@example.org"]


def test_review_table_refuses_decisions_on_a_frozen_plan(planned, run_cli):
    cli_ok(run_cli, planned, "approve", "--all", "--reviewer", "Ada")
    cli_ok(run_cli, planned, "approve", "--freeze", "--reviewer", "Ada")
    table = ReviewTable(str(planned), reviewer="Bo")
    assert "frozen: no more decisions" in table.status.value
    table.rows.value = (table.rows.options[0][1],)
    assert table.click("rejected", "selected") == 0
    assert "Not saved" in table.status.value and "is frozen" in table.status.value


def test_apply_notebook_dry_run_then_journal_and_chart(planned, run_cli, tmp_path, emulator):
    cli_ok(run_cli, planned, "approve", "--all", "--reviewer", "Ada")
    cli_ok(run_cli, planned, "approve", "--freeze", "--reviewer", "Ada")
    nb = execute("apply.ipynb", tmp_path / "dry.ipynb", planned)
    text = outputs_text(nb)
    assert "dry run of plan 1" in text and text.count("would send:") == 5
    assert not [r for r in emulator.requests if r.method == "POST"]
    nb = execute("apply.ipynb", tmp_path / "run.ipynb", planned, plan_id=1, execute=True)
    text = outputs_text(nb)
    assert "applied plan 1" in text and "done 5" in text
    assert "plan 1: all 5 applied items agree on both sides" in text
    assert emulator.get_member(TEST_LIST_ID, seed_email("Betty"))["status"] == "subscribed"
    nb = execute("apply.ipynb", tmp_path / "after.ipynb", planned, plan_id=1)
    text = outputs_text(nb)
    assert "5 items already finished by an earlier apply" in text
    assert text.count("<td>sending</td>") == 5 and text.count("<td>done</td>") >= 5
    assert "image/png" in text
    assert TEST_API_KEY.split("-")[0] not in json.dumps(nb)
