"""Issue 19 point 3: SIGKILL at each crash point — during each snapshot while it loads, during
reconcile, during freeze, while apply writes its backup and while it creates a contact — leaves
a store that opens, with nothing marked complete that is not, and the next command succeeds.

The kills use the test hook common/crashpoints.py (CIVIMC_TEST_DIE_AT), inert otherwise."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
from support.apply import changed_at_mailchimp, cli_ok, journal_states, plan_and_freeze
from support.apply_population import load_every_rule
from support.values import TEST_LIST_ID

from civimc_audit.common.crashpoints import DIE_ENV
from civimc_audit.config import load_config
from civimc_audit.store import SNAPSHOT_TABLES, Store


def killed_at(config, point: str, *args) -> None:
    """Run the CLI in a child process told to SIGKILL itself at `point`."""
    env = {**os.environ, DIE_ENV: point}
    done = subprocess.run([sys.executable, "-m", "civimc_audit.cli", "--config", str(config),
                           *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == -signal.SIGKILL, (point, done.stdout, done.stderr)


def registry(config) -> list[tuple]:
    """(id, source, status) of every snapshot; the store must open read-write after a kill, and
    every snapshot marked complete must hold exactly the rows its counts say."""
    with Store(load_config(config).store_file) as store:
        rows = store.con.execute(
            "SELECT id, source, status, row_counts FROM snapshots ORDER BY id").fetchall()
        for sid, source, status, counts in rows:
            if status == "complete":
                for table in SNAPSHOT_TABLES[source]:
                    n = store.con.execute(f"SELECT count(*) FROM {table} WHERE snapshot_id = ?",
                                          [sid]).fetchone()[0]
                    assert n == json.loads(counts)[table], (sid, table)
            elif status == "failed":
                for table in SNAPSHOT_TABLES[source]:
                    assert not store.con.execute(
                        f"SELECT count(*) FROM {table} WHERE snapshot_id = ?", [sid]
                    ).fetchone()[0], (sid, table)
    return [r[:3] for r in rows]


def scalar(config, sql):
    with Store(load_config(config).store_file, read_only=True) as store:
        return store.con.execute(sql).fetchone()[0]


@pytest.fixture
def world(civi_db, emulator, make_config):
    ids = load_every_rule(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID)
    return make_config("lock_wait_seconds = 0"), ids


@pytest.mark.parametrize("side, point", [("--civicrm-only", "civicrm_loading"),
                                         ("--mailchimp-only", "mailchimp_loading")])
def test_a_snapshot_killed_while_loading(world, run_cli, side, point):
    config, _ = world
    killed_at(config, point, "snapshot", side)
    ((sid, source, status),) = registry(config)
    assert status == "running"  # never complete; no reconcile will take it
    code, _, err = run_cli("--config", config, "reconcile")
    assert code == 2 and "no complete" in err.lower(), err
    cli_ok(run_cli, config, "snapshot")
    after = registry(config)
    assert (sid, source, "failed") in after  # the next snapshot marked it interrupted
    assert sorted(s for _, s, st in after if st == "complete") == ["civicrm", "mailchimp"]
    cli_ok(run_cli, config, "reconcile")


def test_reconcile_killed_leaves_no_reconciliation(world, run_cli):
    config, _ = world
    cli_ok(run_cli, config, "snapshot")
    killed_at(config, "reconcile_outcomes", "reconcile")
    registry(config)
    assert scalar(config, "SELECT count(*) FROM reconciliations") == 0
    assert scalar(config, "SELECT count(*) FROM outcomes") == 0
    out = cli_ok(run_cli, config, "reconcile")
    assert scalar(config, "SELECT count(*) FROM outcomes") > 10, out
    cli_ok(run_cli, config, "plan")


def test_freeze_killed_leaves_the_plan_open(world, run_cli):
    config, _ = world
    for cmd in (["snapshot"], ["reconcile"], ["plan"], ["approve", "--all", "--reviewer", "Ada"]):
        cli_ok(run_cli, config, *cmd)
    killed_at(config, "freeze", "approve", "--freeze", "--reviewer", "Ada")
    registry(config)
    assert scalar(config, "SELECT status FROM plans WHERE id = 1") == "open"
    assert scalar(config, "SELECT frozen_hash FROM plans WHERE id = 1") is None
    cli_ok(run_cli, config, "approve", "--freeze", "--reviewer", "Ada")
    assert scalar(config, "SELECT status FROM plans WHERE id = 1") == "frozen"




def new_contacts(civi_db) -> int:
    civi_db.conn.commit()
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM civicrm_email WHERE email = 'nova@example.org'")
        return cur.fetchone()[0]


@pytest.mark.parametrize("point", ["apply_backup", "civicrm_creating"])
def test_an_apply_killed_in_its_backup_or_creating_a_contact(world, run_cli, emulator, civi_db,
                                                             point):
    config, _ = world
    plan_and_freeze(run_cli, config, "--allow-pending")
    emulator.clear_requests()
    killed_at(config, point, "apply", "--execute", "--no-verify")
    registry(config)
    states = journal_states(config)
    if point == "apply_backup":  # nothing was sent before the backup was whole
        assert set(states.values()) == {""} and not changed_at_mailchimp(emulator)
    else:  # the contact's transaction died with the process: nothing half-made is left
        assert new_contacts(civi_db) == 0 and "sending" in states.values()
    code, out, err = run_cli("--config", config, "apply", "--execute", "--no-verify")
    assert code in (0, 1), (out, err)
    assert set(journal_states(config).values()) <= {"done", "failed", "stale"}
    changed = changed_at_mailchimp(emulator)
    assert changed and max(changed.values()) == 1, changed  # nothing sent twice
    assert new_contacts(civi_db) == 1  # created once
    out = cli_ok(run_cli, config, "apply", "--execute", "--no-verify")
    assert "nothing to send" in out
