"""Issue 19 point 1: one process at a time writes to the store. A second writer waits its
bounded time, then exits 2 naming the holder, having changed nothing; readers read meanwhile;
the holder is neither cut off nor made to send anything twice."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading

import pytest
from support.apply import (
    changed_at_mailchimp,
    cli_ok,
    journal_states,
    plan_and_freeze,
    start_apply,
)
from support.apply_population import load_every_rule
from support.values import TEST_LIST_ID

from civimc_audit.common.oslock import OSLock, read_owner
from civimc_audit.config import load_config
from civimc_audit.store import Store
from civimc_audit.store.lock import StoreLock, copy_path, lock_path, publish_copy

WAIT = 1  # [store] lock_wait_seconds of these tests




def counts(config) -> dict:
    with Store(load_config(config).store_file, read_only=True) as store:
        return {t: store.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in ("snapshots", "reconciliations", "plans", "decisions", "apply_runs")}


def refused(run_cli, config, *args, holder: str):
    code, out, err = run_cli("--config", config, *args)
    assert code == 2, (args, out, err)
    waiting, line = err.strip().splitlines()
    assert waiting.startswith(f"civimc-audit: `{holder}`") and "waiting up to" in waiting
    assert line.startswith(f"civimc-audit: `{holder}`") and " pid " in line and " since " in line
    assert f"waited {WAIT} s" in line and "changed nothing" in line, line
    return line


@pytest.fixture
def frozen(civi_db, emulator, make_config, run_cli, tmp_path):
    load_every_rule(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID)
    config = make_config(f"lock_wait_seconds = {WAIT}")
    plan_and_freeze(run_cli, config, "--allow-pending")
    cli_ok(run_cli, config, "review", "--export", tmp_path / "review.csv")
    return config


def test_writers_during_an_apply_are_refused_readers_read_and_the_apply_finishes(
        frozen, emulator, civi_db, run_cli, tmp_path):
    config = frozen
    before = counts(config)
    proc = start_apply(config, "mailchimp_after_call:1:pause")  # one batch sent, not journaled
    try:
        line = proc.stdout.readline()
        assert line.startswith("paused at mailchimp_after_call"), (line, proc.stderr.read())
        sent_so_far = changed_at_mailchimp(emulator)
        assert sent_so_far

        line = refused(run_cli, config, "run", holder="apply")
        assert f"pid {proc.pid}" in line and "plan 1" in line
        assert not (config.parent / "runs" / "index.html").exists()
        refused(run_cli, config, "apply", "--execute", holder="apply")
        refused(run_cli, config, "snapshot", holder="apply")
        refused(run_cli, config, "snapshot", "--mailchimp-only", holder="apply")
        refused(run_cli, config, "review", "--import", tmp_path / "review.csv", "--reviewer",
                "Bo", holder="apply")
        refused(run_cli, config, "approve", "--all", "--reviewer", "Bo", holder="apply")
        refused(run_cli, config, "plan", "--new", holder="apply")
        refused(run_cli, config, "reconcile", holder="apply")

        # Readers work meanwhile, from the copy the last writer published.
        code, out, err = run_cli("--config", config, "outcomes", "--format", "csv")
        assert code == 0, err
        assert "is writing to the audit store" in err and "`apply`" in err
        assert len(list(csv.DictReader(out.splitlines()))) > 10
        code, out, err = run_cli("--config", config, "plan", "--show")
        assert code == 0 and "plan 1" in out, err
        code, out, err = run_cli("--config", config, "export", "2", "--format", "csv", "--out",
                                 tmp_path / "exp")
        assert code == 0, err
        code, out, err = run_cli("--config", config, "review", "--export",
                                 tmp_path / "again.csv")
        assert code == 0, err
        code, out, err = run_cli("--config", config, "report")
        assert code == 0, err
        assert "audit.html" in out and "is writing to the audit store" in err
        assert changed_at_mailchimp(emulator) == sent_so_far  # nobody else sent anything
    finally:
        os.kill(proc.pid, signal.SIGUSR1)  # go on
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out, err)
    after = counts(config)
    assert after == {**before, "apply_runs": before["apply_runs"] + 1}  # nothing else written
    assert set(journal_states(config).values()) == {"done"}
    changed = changed_at_mailchimp(emulator)
    assert max(changed.values()) == 1, changed  # nothing sent twice
    out = cli_ok(run_cli, config, "apply", "--execute", "--no-verify")
    assert "nothing to send" in out
    assert not lock_path(load_config(config).store_file).exists()


def test_a_second_snapshot_waits_then_is_refused_and_the_first_completes(
        civi_db, emulator, make_config, run_cli):
    from civimc_sandbox.demo import load_seed

    load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, 2026)
    config = make_config(f"lock_wait_seconds = {WAIT}")
    cli_ok(run_cli, config, "snapshot")
    cli_ok(run_cli, config, "reconcile")
    before = counts(config)
    in_page, release = threading.Event(), threading.Event()

    def hold(emu, list_id, offset):
        in_page.set()
        release.wait(60)

    emulator.on_members_page = hold
    first = subprocess.Popen([sys.executable, "-m", "civimc_audit.cli", "--config", str(config),
                              "snapshot"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        assert in_page.wait(60), "the first snapshot never reached Mailchimp"
        line = refused(run_cli, config, "snapshot", holder="snapshot")
        assert f"pid {first.pid}" in line
        code, out, err = run_cli("--config", config, "outcomes")
        assert code == 0 and "fred@bedrock.example.org" in out, err
    finally:
        release.set()
        emulator.on_members_page = None
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    assert counts(config)["snapshots"] == before["snapshots"] + 2  # the first's two, no more
    with Store(load_config(config).store_file, read_only=True) as store:
        statuses = {r[0] for r in store.con.execute("SELECT status FROM snapshots").fetchall()}
    assert statuses == {"complete"}


def test_a_writer_waits_for_the_lock_and_goes_on_when_it_is_free(civi_db, emulator,
                                                                 make_config):
    """Held by another process; the waiting `snapshot` says whom it waits for, and runs as soon
    as the holder ends."""
    config = make_config("lock_wait_seconds = 120")
    store_file = load_config(config).store_file
    with OSLock(lock_path(store_file), "approve", {"plan": 4}) as holder:
        proc = subprocess.Popen([sys.executable, "-m", "civimc_audit.cli", "--config",
                                 str(config), "snapshot"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        line = proc.stderr.readline()
        assert line.startswith(f"civimc-audit: `approve` (plan 4), pid {os.getpid()}"), line
        assert "waiting up to 120 s" in line
        assert proc.poll() is None and holder.held
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "civicrm snapshot 1" in out and "mailchimp snapshot 2" in out


def test_the_read_copy_is_owner_only_and_made_when_a_writer_ends(civi_db, emulator,
                                                                 make_config, run_cli):
    config = make_config()
    store_file = load_config(config).store_file
    cli_ok(run_cli, config, "snapshot")
    copy = copy_path(store_file)
    assert copy.exists() and (copy.stat().st_mode & 0o777) == 0o600
    with Store(copy, read_only=True) as store:
        assert store.con.execute("SELECT count(*) FROM snapshots").fetchone()[0] == 2


def test_the_lock_is_reentrant_in_a_process_and_publishes_once_at_the_end(tmp_path):
    """`run --apply`: the run holds the lock, the apply inside shares it and adds its plan."""
    store_file = tmp_path / "s.duckdb"
    with StoreLock(store_file, "run"):
        Store(store_file).close()
        with StoreLock(store_file, "apply", details={"plan": 1}):
            owner = read_owner(lock_path(store_file))
            assert (owner.command, owner.pid, owner.details) == ("run", os.getpid(), {"plan": 1})
        assert lock_path(store_file).exists()  # the outer holder still has it
        assert not copy_path(store_file).exists()
    assert not lock_path(store_file).exists()
    assert copy_path(store_file).exists()


def test_no_copy_is_published_from_a_store_still_open_with_a_log(tmp_path):
    store_file = tmp_path / "s.duckdb"
    with Store(store_file) as store:
        store.begin_snapshot("civicrm")
        assert store_file.with_name("s.duckdb.wal").exists()
        assert publish_copy(store_file) is None
    assert publish_copy(store_file) == copy_path(store_file)
    with Store(copy_path(store_file), read_only=True) as copy:
        assert copy.snapshots()[0].status == "running"
