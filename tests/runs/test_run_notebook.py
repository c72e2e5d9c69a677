"""notebooks/run.ipynb — the README's Airflow PapermillOperator example — runs exactly
`civimc-audit run`, and fails (so the scheduler's task fails) when the command would exit
non-zero."""

from __future__ import annotations

import json
from pathlib import Path

import papermill as pm
import pytest
from support.values import TEST_API_KEY, TEST_LIST_ID

from civimc_sandbox.demo import load_seed

RUN_NOTEBOOK = Path(__file__).resolve().parents[2] / "civimc_audit" / "notebooks" / "run.ipynb"


@pytest.fixture
def config(civi_db, emulator, make_config):
    load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, 2026)
    return make_config("\n[schedule]\nkeep_runs_days = 30\n")


def execute(config, tmp_path, **params):
    out = tmp_path / "airflow-output.ipynb"
    pm.execute_notebook(str(RUN_NOTEBOOK), str(out), kernel_name="python3", progress_bar=False,
                        parameters={"config_path": str(config), **params})
    return out


def test_run_notebook_makes_the_same_record_as_the_command(config, tmp_path):
    out = execute(config, tmp_path)
    (folder,) = [p for p in (config.parent / "runs").iterdir() if p.is_dir()]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "ok" and summary["steps"]["prune"] == "ok"
    assert {"audit.ipynb", "audit.html"} <= {p.name for p in folder.iterdir()}
    assert (config.parent / "runs" / "index.html").exists()
    text = out.read_text()
    assert f"Run <b>{folder.name}</b>: <b>ok</b>" in text
    assert TEST_API_KEY.split("-")[0] not in text


def test_run_notebook_fails_when_a_threshold_is_crossed(config, tmp_path):
    config.write_text(config.read_text().replace("[schedule]", "[schedule]\nmax_removals = 0"))
    with pytest.raises(pm.PapermillExecutionError) as caught:
        execute(config, tmp_path)
    assert caught.value.ename == "NeedsPerson"
    assert caught.value.evalue == "threshold crossed: 2 removals > max_removals 0"
    (folder,) = [p for p in (config.parent / "runs").iterdir() if p.is_dir()]
    assert json.loads((folder / "summary.json").read_text())["status"] == "threshold"


def test_run_notebook_applies_standing_approvals_and_says_what_waits(config, tmp_path,
                                                                      emulator):
    config.write_text(config.read_text().replace(
        "[schedule]", '[schedule]\nauto_approve = ["add_to_mailchimp"]'))
    out = execute(config, tmp_path, apply=True)
    (folder,) = [p for p in (config.parent / "runs").iterdir()
                 if p.is_dir() and p.name[0].isdigit()]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["applied"] == {"subscribe": {"done": 1, "failed": 0, "stale": 0}}
    assert summary["waiting_for_review"] == {"add_to_civicrm_group": 1,
                                             "remove_from_civicrm_group": 1,
                                             "unsubscribe_in_mailchimp": 1}
    assert emulator.get_member(TEST_LIST_ID, "betty@bedrock.example.org")["status"] == \
        "subscribed"
    text = out.read_text()
    assert "Applied plan 1 (standing approval of 1 items" in text
    assert "3 items wait for a person (1 add_to_civicrm_group" in text
