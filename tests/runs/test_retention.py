"""Retention cannot destroy evidence, whatever `keep_runs_days` says: an aggressive retention
still keeps the apply folder (backup, journal) of a plan that is not finished, anything younger
than a day, and the latest complete snapshot of each source; old finished things go."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import duckdb
import pytest
from support.values import TEST_LIST_ID

from civimc_audit.common.times import utcnow
from civimc_audit.runs.retention import MIN_KEEP, cutoff_for
from civimc_sandbox.demo import load_seed

YEAR = datetime.now(UTC).year - 1
ADDS = 'auto_approve = ["add_to_mailchimp", "add_to_civicrm_group"]'
OLD = datetime(2020, 1, 1)


def stamp(when: datetime) -> str:
    return f"{when:%Y%m%dT%H%M%SZ}"


def cli_ok(run_cli, config, *args):
    code, out, err = run_cli("--config", config, *args)
    assert code == 0, (out, err)


def folders(runs):
    return sorted(p.name for p in runs.iterdir() if p.is_dir())


@pytest.mark.parametrize("keep", ["1", "0.001"])
def test_an_aggressive_retention_keeps_the_evidence(keep, civi_db, emulator, make_config, run_cli):
    load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)
    config = make_config(f"\n[schedule]\nkeep_runs_days = {keep}\n{ADDS}\n")
    runs = config.parent / "runs"
    # Plan 1: made, approved and applied by `run --apply` (finished). Plan 2: approved and
    # frozen, then its apply was killed mid-send (one item 'sending', the rest never sent).
    cli_ok(run_cli, config, "run", "--apply")
    cli_ok(run_cli, config, "run")
    for args in (["plan"], ["approve", "--all", "--reviewer", "t"],
                 ["approve", "--freeze", "--reviewer", "t"]):
        cli_ok(run_cli, config, *args)
    run1, run2 = [p for p in sorted(runs.iterdir()) if p.name[0].isdigit()]
    (applied,) = runs.glob("apply-plan1-*")
    young = utcnow() - timedelta(hours=2)

    # Young copies (two hours old), then everything else made to look years old: folder names
    # (what retention reads), snapshot dates, plan activity and journal dates.
    shutil.copytree(run2, runs / stamp(young))
    shutil.copytree(applied, runs / f"apply-plan1-{stamp(young)}")
    shutil.copytree(applied, runs / f"apply-plan2-{stamp(OLD)}")  # plan 2's killed apply
    shutil.copytree(applied, runs / f"apply-plan99-{stamp(OLD)}")  # a plan the store lacks
    old_names = {run1.rename(runs / stamp(OLD)).name,
                 run2.rename(runs / stamp(OLD + timedelta(days=1))).name}
    applied = applied.rename(runs / f"apply-plan1-{stamp(OLD + timedelta(days=2))}")
    with duckdb.connect(str(config.parent / "audit.duckdb")) as con:
        con.execute("UPDATE snapshots SET started_at = $1, taken_at = $1", [OLD])
        con.execute("UPDATE plans SET created_at = $1, frozen_at = $1", [OLD])
        con.execute("UPDATE journal SET journaled_at = $1", [OLD])
        item = con.execute("SELECT min(item_id) FROM decisions WHERE plan_id = 2"
                           " AND decision = 'approved'").fetchone()[0]
        con.execute("INSERT INTO journal (plan_id, item_id, run_id, state, journaled_at)"
                    " VALUES (2, ?, 99, 'sending', ?)", [item, OLD])
        latest_mc = con.execute("SELECT max(id) FROM snapshots WHERE source = 'mailchimp'"
                                " AND status = 'complete'").fetchone()[0]

    # The next run's Mailchimp snapshot fails, so the old one stays the latest complete one.
    config.write_text(config.read_text().replace(emulator.base_url, "http://127.0.0.1:9/3.0")
                      .replace("[mailchimp]", "[mailchimp]\nretries = 1"))
    code, _, err = run_cli("--config", config, "run")
    assert code == 3, err
    (last,) = [p for p in runs.iterdir()
               if p.name[0].isdigit() and p.name not in old_names | {stamp(young)}]
    pruned = json.loads((last / "summary.json").read_text())["pruned"]

    assert set(pruned["runs"]) == old_names and pruned["apply_folders"] == [applied.name]
    assert set(folders(runs)) >= {stamp(young), f"apply-plan1-{stamp(young)}",
                                  f"apply-plan2-{stamp(OLD)}", f"apply-plan99-{stamp(OLD)}"}
    assert not set(folders(runs)) & (old_names | {applied.name})
    kept = pruned["kept_old_apply_folders"]
    assert kept[f"apply-plan2-{stamp(OLD)}"].startswith("plan 2 is not finished")
    assert kept[f"apply-plan99-{stamp(OLD)}"] == "plan 99 is not in the store"
    assert (runs / f"apply-plan2-{stamp(OLD)}" / "journal.csv").is_file()
    assert (runs / f"apply-plan2-{stamp(OLD)}" / "backup").is_dir()

    assert pruned["kept_old_snapshots"] == {str(latest_mc): "latest complete mailchimp snapshot"}
    with duckdb.connect(str(config.parent / "audit.duckdb"), read_only=True) as con:
        left = con.execute("SELECT id, source, status, coalesce(taken_at, started_at)"
                           " FROM snapshots").fetchall()
    assert pruned["snapshots"] and not set(pruned["snapshots"]) & {i for i, *_ in left}
    old = [(i, source) for i, source, _, when in left if when < utcnow() - MIN_KEEP]
    assert old == [(latest_mc, "mailchimp")]
    assert any(source == "civicrm" and status == "complete" for _, source, status, _ in left)


@pytest.mark.parametrize("days", [-3, 0, 0.001, 1, float("nan")])
def test_retention_never_reaches_younger_than_a_day(days):
    now = datetime(2026, 3, 1, 2, 30)
    assert cutoff_for(days, now) == now - timedelta(days=1)


def test_retention_longer_than_a_datetime_keeps_everything():
    now = datetime(2026, 3, 1, 2, 30)
    assert cutoff_for(90, now) == now - timedelta(days=90)
    assert cutoff_for(float("inf"), now) == cutoff_for(1e12, now) == datetime.min
