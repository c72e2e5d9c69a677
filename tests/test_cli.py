"""The command line for operators and scripts: --config after the command, refusals in one line,
plans that are not built twice, `run` saying where its record is, and the --json documents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.apply import cli_ok
from support.civicrm import db_user
from support.values import TEST_LIST_ID

from civimc_audit.cli import NO_CONFIG, cli
from civimc_audit.common.codes import OUTCOME_ORDER
from civimc_audit.config import ENV_CIVICRM_PASSWORD, load_config
from civimc_audit.store import Store
from civimc_sandbox.demo import load_seed, seed_email

YEAR = 2026


@pytest.fixture
def seeded(civi_db, emulator, make_config):
    load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)
    return make_config()


@pytest.fixture
def reconciled(seeded, run_cli):
    for cmd in (["snapshot"], ["reconcile"]):
        cli_ok(run_cli, seeded, *cmd)
    return seeded


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(("civimc-audit: ", "Error: ")), err
    return lines[0]


def plans_in(config) -> list[tuple]:
    with Store(load_config(config).store_file) as store:
        return store.con.execute("SELECT id, reconciliation_id, status FROM plans"
                                 " ORDER BY id").fetchall()


# --config after the command -----------------------------------------------------------------
def test_config_works_after_the_command_name(seeded, run_cli):
    code, out, err = run_cli("snapshot", "--config", seeded)
    assert code == 0, err
    assert "civicrm snapshot 1" in out
    code, out, err = run_cli("reconcile", "--config", seeded)
    assert code == 0 and "reconciliation 1" in out, err


@pytest.mark.parametrize("name", sorted(set(cli.commands) - set(NO_CONFIG)))
def test_every_command_shows_config_in_its_help(name, run_cli):
    code, out, _ = run_cli(name, "--help")
    assert code == 0
    assert "--config FILE" in out


def test_a_missing_config_after_the_command_is_named(run_cli, tmp_path):
    code, _, err = run_cli("check", "--config", tmp_path / "nope.toml")
    assert code == 2
    assert "nope.toml" in one_line(err)


# refusals and what operators are told -------------------------------------------------------
def test_plan_twice_returns_the_open_plan_and_new_builds_another(reconciled, run_cli):
    cli_ok(run_cli, reconciled, "plan")
    out = cli_ok(run_cli, reconciled, "plan")
    assert "plan 1 already open for reconciliation 1" in out and "--new" in out
    assert out.strip().splitlines()[-1] == "plan 1"
    assert plans_in(reconciled) == [(1, 1, "open")]
    out = cli_ok(run_cli, reconciled, "plan", "--new")
    assert out.strip().splitlines()[-1] == "plan 2"
    assert [p[0] for p in plans_in(reconciled)] == [1, 2]


def test_a_frozen_plan_does_not_stop_a_new_plan(reconciled, run_cli):
    cli_ok(run_cli, reconciled, "plan")
    cli_ok(run_cli, reconciled, "approve", "--all", "--reviewer", "Ada")
    cli_ok(run_cli, reconciled, "approve", "--freeze", "--reviewer", "Ada")
    out = cli_ok(run_cli, reconciled, "plan")
    assert "already open" not in out and out.strip().splitlines()[-1] == "plan 2"


@pytest.mark.parametrize("option, value", [("--outcome", "add_to_mailchimps"),
                                           ("--rule", "R11"), ("--flag", "duplicate")])
def test_approve_refuses_an_unknown_outcome_rule_or_flag(reconciled, run_cli, option, value):
    cli_ok(run_cli, reconciled, "plan")
    code, _, err = run_cli("--config", reconciled, "approve", option, value, "--reviewer", "Ada")
    assert code == 2
    assert value in err and option in err


def test_approve_says_when_a_filter_matches_nothing(reconciled, run_cli):
    cli_ok(run_cli, reconciled, "plan")
    out = cli_ok(run_cli, reconciled, "approve", "--rule", "r1", "--flag", "contact_deleted",
                 "--reviewer", "Ada")
    assert out.strip() == ("no item of plan 1 matches --rule R1 --flag contact_deleted; "
                           "nothing approved")
    out = cli_ok(run_cli, reconciled, "approve", "--rule", "R6", "--reviewer", "Ada")
    assert out.strip() == "1 items approved"


def test_report_refuses_an_unknown_reconciliation_before_making_a_folder(reconciled, run_cli):
    code, _, err = run_cli("--config", reconciled, "report", "--run", 99)
    assert code == 2
    assert "no reconciliation 99" in one_line(err)
    runs = load_config(reconciled).runs_path
    assert not runs.exists() or not any(runs.iterdir())


def test_review_export_into_a_missing_folder_is_one_line(reconciled, run_cli, tmp_path):
    cli_ok(run_cli, reconciled, "plan")
    code, _, err = run_cli("--config", reconciled, "review", "--export",
                           tmp_path / "missing" / "review.csv")
    assert code == 2
    assert "does not exist" in one_line(err)


def test_a_refused_missing_password_names_the_variable(civi_db, make_config, run_cli,
                                                       monkeypatch):
    with db_user(civi_db, "SELECT") as (user, password):
        config = make_config(user=user)
        monkeypatch.delenv(ENV_CIVICRM_PASSWORD)
        code, _, err = run_cli("--config", config, "check")
        assert code == 2
        assert f"set {ENV_CIVICRM_PASSWORD}" in one_line(err)
        monkeypatch.setenv(ENV_CIVICRM_PASSWORD, "wrong")
        code, _, err = run_cli("--config", config, "check")
        assert code == 2 and f"set {ENV_CIVICRM_PASSWORD}" not in err
        monkeypatch.setenv(ENV_CIVICRM_PASSWORD, password)
        assert run_cli("--config", config, "check")[0] == 0


def test_an_accepted_empty_password_is_not_refused(civi_db, make_config, run_cli, monkeypatch):
    if civi_db.server.password:
        pytest.skip("the test server's account has a password")
    config = make_config()
    monkeypatch.delenv(ENV_CIVICRM_PASSWORD)
    code, _, err = run_cli("--config", config, "check")
    assert code == 0, err


def test_run_over_a_threshold_still_says_where_its_record_is(seeded, run_cli):
    config = seeded
    config.write_text(config.read_text() + "\n[schedule]\nmax_removals = 0\n")
    code, out, err = run_cli("--config", config, "run")
    assert code == 1, err
    lines = out.strip().splitlines()
    summary = next(line for line in lines if line.startswith("summary: "))[len("summary: "):]
    report = next(line for line in lines if line.startswith("report: "))[len("report: "):]
    assert json.loads(Path(summary).read_text(encoding="utf-8"))["status"] == "threshold"
    assert report.endswith("audit.html") and Path(report).read_text(encoding="utf-8")
    assert "threshold crossed" in one_line(err)


def test_a_failed_run_says_where_its_record_is(seeded, run_cli, emulator):
    emulator.api_key = "f" * 32 + "-us1"  # the emulator now refuses the configured key
    code, out, err = run_cli("--config", seeded, "run")
    assert code == 2, err
    summary = next(line for line in out.splitlines() if line.startswith("summary: "))
    summary_path = Path(summary[len("summary: "):])
    assert json.loads(summary_path.read_text(encoding="utf-8"))["status"] == "failed"
    assert any(line.startswith("report: ") for line in out.splitlines())


def test_outcomes_table_shows_the_reason(reconciled, run_cli):
    out = cli_ok(run_cli, reconciled, "outcomes", "--outcome", "add_to_mailchimp")
    header, row = out.strip().splitlines()
    assert header.split()[-1] == "reason"
    assert "CiviCRM" in row  # the sentence, e.g. "… added them … not at Mailchimp"


# --json documents ---------------------------------------------------------------------------
def json_of(run_cli, config, *args, code=0) -> dict:
    out = cli_ok(run_cli, config, *args, "--json", code=code)
    doc = json.loads(out)
    assert isinstance(doc, dict)
    assert "" not in list(_leaves(doc)), "a missing value must be null, never \"\""
    return doc


def _leaves(doc):
    if isinstance(doc, dict):
        for v in doc.values():
            yield from _leaves(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _leaves(v)
    else:
        yield doc


def test_check_json(seeded, run_cli):
    doc = json_of(run_cli, seeded, "check")
    assert set(doc) == {"ok", "error", "checks"} and doc["ok"] is True and doc["error"] is None
    assert [c["name"] for c in doc["checks"]][:2] == ["civicrm_tables", "civicrm_group"]
    assert all(set(c) == {"name", "status", "message", "facts"} for c in doc["checks"])


def test_check_json_on_failure_still_is_one_document(seeded, run_cli, emulator):
    emulator.api_key = "f" * 32 + "-us1"
    code, out, err = run_cli("--config", seeded, "check", "--json")
    assert code == 2
    doc = json.loads(out)
    assert doc["ok"] is False and doc["error"] and doc["checks"][-1]["status"] == "error"
    assert doc["error"] in one_line(err)


def test_snapshot_and_outcomes_json(seeded, run_cli):
    doc = json_of(run_cli, seeded, "snapshot", "--mailchimp-only")
    assert set(doc) == {"civicrm", "mailchimp", "warnings"} and doc["civicrm"] is None
    assert set(doc["mailchimp"]) == {"id", "source", "status", "started_at", "taken_at",
                                     "message", "mode", "row_counts"}
    assert doc["mailchimp"]["status"] == "complete" and doc["mailchimp"]["message"] is None
    doc = json_of(run_cli, seeded, "snapshot", "--civicrm-only")
    assert doc["civicrm"]["taken_at"].endswith("Z")
    cli_ok(run_cli, seeded, "reconcile")
    doc = json_of(run_cli, seeded, "outcomes")
    assert set(doc) == {"reconciliation_id", "civicrm_snapshot_id", "mailchimp_snapshot_id",
                        "outcome", "count", "rows"}
    assert doc["count"] == len(doc["rows"]) == 5
    rows = {r["email"]: r for r in doc["rows"]}
    betty = rows[seed_email("Betty")]  # only in CiviCRM: no member, no reason code
    assert betty["mailchimp_status"] is None and betty["mailchimp_changed"] is None
    assert betty["reason_code"] is None and isinstance(betty["flags"], list)
    assert len({tuple(r) for r in doc["rows"]}) == 1  # the same keys in every row
    # --format json stays as it was: an array of rows
    assert isinstance(json.loads(cli_ok(run_cli, seeded, "outcomes", "--format", "json")), list)


def test_plan_apply_verify_json(reconciled, run_cli):
    doc = json_of(run_cli, reconciled, "plan")
    assert doc["built"] is True and doc["status"] == "open" and doc["frozen_at"] is None
    assert doc["frozen_reviewers"] == [] and doc["items"] == 4
    assert sum(a["undecided"] for a in doc["actions"]) == 4
    keys = set(doc)
    assert json_of(run_cli, reconciled, "plan")["built"] is False
    cli_ok(run_cli, reconciled, "approve", "--all", "--reviewer", "Ada")
    cli_ok(run_cli, reconciled, "approve", "--freeze", "--reviewer", "Ada")
    doc = json_of(run_cli, reconciled, "plan", "--show")
    assert set(doc) == keys and doc["status"] == "frozen" and doc["frozen_reviewers"] == ["Ada"]
    assert sum(a["approved"] for a in doc["actions"]) == 4
    dry = json_of(run_cli, reconciled, "apply")
    assert dry["execute"] is False and dry["run_id"] is None and dry["verify"] is None
    assert dry["to_send"] == 4 and {i["state"] for i in dry["items"]} == {None}
    done = json_of(run_cli, reconciled, "apply", "--execute")
    assert set(done) == set(dry) and done["needs_person"] is False
    assert done["counts"] == {"done": 4} and done["folder"]
    assert set(done["verify"]["outcomes"]) == set(OUTCOME_ORDER)
    doc = json_of(run_cli, reconciled, "verify")
    assert set(doc) == set(done["verify"]) and doc["remaining"] == [] and doc["applied"] == 4


# shell completion (README "Shell completion") -----------------------------------------------
def complete(env: dict) -> str:
    import os
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "civimc_audit.cli"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_documented_completion_scripts_come_out(shell):
    assert "_civimc_audit_completion" in complete({"_CIVIMC_AUDIT_COMPLETE": f"{shell}_source"})


def test_completion_completes_commands_and_choices():
    words = complete({"_CIVIMC_AUDIT_COMPLETE": "bash_complete",
                      "COMP_WORDS": "civimc-audit sn", "COMP_CWORD": "1"})
    assert words.split() == ["plain,snapshot"]
    words = complete({"_CIVIMC_AUDIT_COMPLETE": "bash_complete",
                      "COMP_WORDS": "civimc-audit approve --outcome add_to_m", "COMP_CWORD": "3"})
    assert words.split() == ["plain,add_to_mailchimp"]


def test_an_unexpected_failure_is_one_line_naming_its_traceback_file_and_exits_4(
        run_cli, monkeypatch):
    secret = "fedcba9876543210fedcba9876543210-us9"
    monkeypatch.setenv("CIVIMC_MAILCHIMP_API_KEY", secret)

    def broken(_path=None):
        raise RuntimeError(f"bug while holding {secret}\nsecond line")

    monkeypatch.setattr("civimc_audit.cli.load_config", broken)
    code, out, err = run_cli("check")
    assert code == 4, err
    (line,) = err.strip().splitlines()
    assert line.startswith("civimc-audit: unexpected RuntimeError: bug while holding ***")
    where = Path(line.rsplit("(traceback in ", 1)[1].rstrip(")"))
    text = where.read_text()
    assert "Traceback" in text and "broken" in text and secret not in text
    assert where.stat().st_mode & 0o777 == 0o600
    where.unlink()
