"""`civimc-audit run`: the scheduled pipeline, end to end on the seed's five people (a real
MariaDB and the Mailchimp emulator over HTTP), with papermill executing the audit notebook."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from datetime import UTC, datetime

import duckdb
import nbformat
import pytest
from support.values import TEST_API_KEY, TEST_LIST_ID

from civimc_audit import __version__
from civimc_audit.common.codes import OUTCOME_ORDER
from civimc_audit.common.oslock import OSLock, Owner, read_owner
from civimc_audit.store.lock import lock_path
from civimc_sandbox.demo import load_seed, seed_email

YEAR = datetime.now(UTC).year - 1  # seed dates in the past: changes made "now" are later
SECRET = TEST_API_KEY.split("-")[0]
STEP_FILES = {"audit.ipynb", "audit.html", "summary.json"}


@pytest.fixture
def seeded(civi_db, emulator, make_config):
    """The seed's five people on both sides; returns a config maker taking [schedule] keys."""
    ids = load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)

    def config(schedule: str = "", mailchimp: str = ""):
        path = make_config(f"lock_wait_seconds = 0\n[schedule]\n{schedule}\n")
        if mailchimp:
            path.write_text(path.read_text().replace("[mailchimp]", f"[mailchimp]\n{mailchimp}"))
        return path

    config.ids = ids
    return config


def runs_of(config):
    return sorted(p for p in (config.parent / "runs").iterdir() if p.is_dir())


def summary_of(folder):
    return json.loads((folder / "summary.json").read_text(encoding="utf-8"))


def store(config, read_only=False):
    return duckdb.connect(str(config.parent / "audit.duckdb"), read_only=read_only)


def test_two_runs_leave_two_records_and_the_change_between(seeded, civi_db, emulator, run_cli):
    config = seeded()
    code, out, err = run_cli("--config", config, "run")
    assert code == 0, err
    assert "ok: 5 people, 2 removals, 0 cannot sync; no threshold crossed" in out

    # Between the runs: Wilma unsubscribes at Mailchimp (later than her CiviCRM date, so she
    # gets removed from the group), and Dino joins the CiviCRM group (added to Mailchimp).
    emulator.update_member(TEST_LIST_ID, seed_email("Wilma"), status="unsubscribed")
    dino = civi_db.fixture.contact("Dino", "Flintstone", email="dino@bedrock.example.org")
    civi_db.fixture.add_to_group(dino, civi_db.group_id, datetime.now(UTC))
    civi_db.fixture.commit()
    code, out, err = run_cli("--config", config, "run")
    assert code == 0, err

    first, second = runs_of(config)
    assert out.splitlines()[0].startswith(f"run {second.name}: ok: 6 people")
    for folder in (first, second):
        assert {p.name for p in folder.iterdir()} >= STEP_FILES
    s1, s2 = summary_of(first), summary_of(second)
    for s in (s1, s2):
        assert s["status"] == "ok" and s["exit_code"] == 0 and s["failed_step"] is None
        assert s["version"] == __version__
        assert set(s["outcomes"]) == set(OUTCOME_ORDER)
        assert s["reasons"] == {}
        assert set(s["snapshots"]) == {"civicrm", "mailchimp"}
        for snap in s["snapshots"].values():
            assert snap["taken_at"].endswith("Z") and snap["age_hours"] >= 0
        for step in ("snapshot_civicrm", "snapshot_mailchimp", "reconcile", "thresholds",
                     "report", "index", "total"):
            assert s["durations"][step] >= 0, step
        assert s["steps"]["apply"].startswith("skipped")
    assert s1["outcomes"] == {"remove_from_civicrm_group": 1, "unsubscribe_in_mailchimp": 1,
                              "cannot_sync": 0, "resubscribe_in_mailchimp": 0,
                              "add_to_mailchimp": 1, "add_to_civicrm_group": 1, "no_change": 1}
    assert s1["changes_since_previous"] is None
    assert [s1["snapshots"][k]["id"] for k in ("civicrm", "mailchimp")] == [1, 2]
    assert [s2["snapshots"][k]["id"] for k in ("civicrm", "mailchimp")] == [3, 4]
    assert s1["snapshots"]["mailchimp"]["mode"] == "full"
    assert s2["snapshots"]["mailchimp"]["mode"] == "incremental"  # and still saw Wilma's change

    changes = s2["changes_since_previous"]
    assert changes["previous_run"] == first.name
    assert changes["previous_reconciliation_id"] == s1["reconciliation_id"]
    delta = {o: v["change"] for o, v in changes["outcomes"].items() if v["change"]}
    assert delta == {"remove_from_civicrm_group": 1, "no_change": -1, "add_to_mailchimp": 1}
    assert changes["people"] == {"changed_outcome": 1, "new": 1, "gone": 0}

    # The executed notebook and its HTML show the run's own section, then the audit.
    html = (second / "audit.html").read_text(encoding="utf-8")
    assert f"Scheduled run {second.name}" in html and "Status: ok" in html
    assert "people changed outcome" in html and "dino@bedrock.example.org" in html
    # The run's section shows every step's final state (it was rendered while the report step
    # ran, and refreshed once the run ended), and counts as whole numbers.
    section = html[html.index('class="civimc-run-section"'):]
    section = section[:section.index("</div>")]
    cells = re.findall(r"<td>([^<]*)</td>", section)
    for step, state in s2["steps"].items():
        assert f"<td>{step}</td>\n      <td>{state}</td>" in section or (
            step in cells and state in cells), (step, state)
    assert "running" not in cells and "pending" not in cells
    counts = [re.findall(r"<td>([^<]*)</td>", row)[1:] for row in section.split("<tr")
              if any(f"<td>{o}</td>" in row for o in OUTCOME_ORDER)]
    assert len(counts) == len(OUTCOME_ORDER) and ["1", "0", "-1"] in counts
    assert all(re.fullmatch(r"-?\d+", c) for row in counts for c in row), counts
    index = (config.parent / "runs" / "index.html").read_text(encoding="utf-8")
    assert index.index(second.name) < index.index(first.name)  # newest first
    for folder in (first, second):
        for name in STEP_FILES:
            assert f'href="{folder.name}/{name}"' in index
    assert "data:image/png;base64," in index
    assert not lock_path(config.parent / "audit.duckdb").exists()
    for text in (out, err, index, html, (second / "audit.ipynb").read_text(),
                 (second / "summary.json").read_text()):
        assert SECRET not in text


@pytest.mark.parametrize("schedule, expected", [
    ("max_removals = 1", "threshold crossed: 2 removals > max_removals 1"),
    ("max_removal_percent = 50.0",
     "threshold crossed: removals are 66.67% of the group's 3 > max_removal_percent 50.0"),
    ("max_removals = 1\nmax_removal_percent = 50.0",
     "threshold crossed: 2 removals > max_removals 1; removals are 66.67%"),
])
def test_crossed_threshold_exits_1_with_the_reason(seeded, run_cli, schedule, expected):
    config = seeded(schedule)
    code, out, err = run_cli("--config", config, "run")
    assert code == 1
    assert err.strip().startswith(f"civimc-audit: {expected}")
    assert len(err.strip().splitlines()) == 1
    (folder,) = runs_of(config)
    summary = summary_of(folder)
    assert summary["status"] == "threshold" and summary["exit_code"] == 1
    assert err.strip() == f"civimc-audit: {summary['message']}"
    assert {p.name for p in folder.iterdir()} >= STEP_FILES  # the record is complete anyway
    assert "Status: threshold" in (folder / "audit.html").read_text(encoding="utf-8")
    assert ">threshold<" in (config.parent / "runs" / "index.html").read_text()


def test_thresholds_are_strictly_more_than(seeded, run_cli):
    config = seeded("max_removals = 2\nmax_removal_percent = 66.67\nfail_on_cannot_sync = true\n"
                    "max_snapshot_age_hours = 1")
    code, _, err = run_cli("--config", config, "run")
    assert code == 0, err
    thresholds = summary_of(runs_of(config)[0])["thresholds"]
    assert thresholds["max_removals"] == {"limit": 2, "value": 2, "crossed": False}
    assert thresholds["max_removal_percent"]["value"] == 66.67


def test_cannot_sync_threshold(seeded, civi_db, emulator, run_cli):
    # R8: CiviCRM added later, but Mailchimp cleaned the address.
    cid = civi_db.fixture.contact("Bamm-Bamm", "Rubble", email="bamm@bedrock.example.org")
    civi_db.fixture.add_to_group(cid, civi_db.group_id, datetime(YEAR, 1, 9, tzinfo=UTC))
    civi_db.fixture.commit()
    emulator.add_member(TEST_LIST_ID, "bamm@bedrock.example.org", status="cleaned",
                        last_changed=datetime(YEAR, 1, 8, tzinfo=UTC))
    config = seeded("fail_on_cannot_sync = true")
    code, _, err = run_cli("--config", config, "run")
    assert code == 1
    assert err.strip() == "civimc-audit: threshold crossed: 1 cannot_sync (fail_on_cannot_sync)"
    summary = summary_of(runs_of(config)[0])
    assert summary["reasons"] == {"cleaned_at_mailchimp": 1}
    assert summary["outcomes"]["cannot_sync"] == 1


def test_old_snapshots_cross_the_age_threshold(seeded, run_cli):
    config = seeded("max_snapshot_age_hours = 24")
    assert run_cli("--config", config, "run")[0] == 0
    with store(config) as con:
        con.execute("UPDATE snapshots SET taken_at = taken_at - INTERVAL 3 DAY"
                    " WHERE source = 'mailchimp'")
    code, _, err = run_cli("--config", config, "run", "--reuse-snapshots")
    assert code == 1
    assert "threshold crossed: mailchimp snapshot is 72.0 hours old > max_snapshot_age_hours 24" \
        in err
    summary = summary_of(runs_of(config)[-1])
    assert summary["steps"]["snapshot_mailchimp"].startswith("skipped")
    assert summary["snapshots"]["mailchimp"]["mode"] == "reused"
    assert summary["snapshots"]["mailchimp"]["age_hours"] >= 72


def test_a_failed_source_leaves_a_record_and_exits_3(seeded, emulator, run_cli):
    config = seeded(mailchimp="retries = 1")
    config.write_text(config.read_text().replace(emulator.base_url, "http://127.0.0.1:9/3.0"))
    code, out, err = run_cli("--config", config, "run")
    assert code == 3
    # one line per wait while the client retried, then the reason as the last line
    *waits, reason = err.strip().splitlines()
    assert len(waits) == 1 and re.fullmatch(r"civimc-audit: Mailchimp unreachable \(connection "
                                            r"refused\), retry 1 of 1 in 0\.\d s", waits[0])
    assert reason.startswith("civimc-audit: snapshot_mailchimp failed: Mailchimp API at "
                             "http://127.0.0.1:9/3.0 unreachable")
    (folder,) = runs_of(config)
    summary = summary_of(folder)
    assert summary["status"] == "failed" and summary["exit_code"] == 3
    assert summary["failed_step"] == "snapshot_mailchimp"
    assert reason == f"civimc-audit: {summary['message']}"
    assert summary["steps"]["snapshot_civicrm"] == "ok"
    assert summary["steps"]["reconcile"].startswith("skipped")
    assert summary["steps"]["report"] == "ok"
    # The executed notebook stops in the run cell, with the failure, and shows no audit.
    nb = nbformat.read(str(folder / "audit.ipynb"), as_version=4)
    failed = [c for c in nb.cells if c.cell_type == "code"
              and any(o.get("output_type") == "error" for o in c.get("outputs", []))]
    assert len(failed) == 1 and "show_run(run_dir)" in failed[0].source
    error = next(o for o in failed[0].outputs if o["output_type"] == "error")
    assert error["ename"] == "RunStepFailed" and "snapshot_mailchimp" in error["evalue"]
    html = (folder / "audit.html").read_text(encoding="utf-8")
    assert "Status: failed" in html and "already agree;" not in html  # later cells not run
    assert "Who | Mailchimp" not in html
    index = (config.parent / "runs" / "index.html").read_text()
    assert ">failed<" in index and "snapshot_mailchimp failed" in index
    for text in (err, html, index, json.dumps(summary)):
        assert SECRET not in text
    assert not lock_path(config.parent / "audit.duckdb").exists()


def test_a_configuration_problem_met_during_the_run_exits_2(seeded, civi_db, run_cli):
    config = seeded()
    config.write_text(config.read_text().replace(f"group_id = {civi_db.group_id}",
                                                 "group_id = 999999"))
    code, _, err = run_cli("--config", config, "run")
    assert code == 2
    assert err.startswith("civimc-audit: snapshot_civicrm failed: CiviCRM group with id 999999")
    summary = summary_of(runs_of(config)[0])
    assert summary["status"] == "failed" and summary["exit_code"] == 2


def test_a_live_lock_refuses_the_run(seeded, run_cli):
    config = seeded()
    store_file = config.parent / "audit.duckdb"
    # Held as another process holds it (an OSLock of its own is not this process's StoreLock).
    with OSLock(lock_path(store_file), "apply", {"plan": 3}) as held:
        code, out, err = run_cli("--config", config, "run")
        info = held.owner
    assert code == 2
    assert err.strip() == (
        f"civimc-audit: `apply` (plan 3), pid {os.getpid()} on {info.host} since "
        f"{info.since:%Y-%m-%d %H:%M:%S}Z, holds the audit store {store_file} (one command "
        "writes to it at a time); waited 0 s, so this `run` did not start and changed nothing")
    assert not (config.parent / "runs").exists()  # not even a run folder
    assert not lock_path(store_file).exists()  # released by its owner


def start_held_run(config, emulator):
    """`civimc-audit run` in another process, held at its first Mailchimp page until `release`
    is set; returns (process, in_page event, release event)."""
    in_page, release = threading.Event(), threading.Event()

    def hold(emu, list_id, offset):
        in_page.set()
        release.wait(60)

    emulator.on_members_page = hold
    proc = subprocess.Popen([sys.executable, "-m", "civimc_audit.cli", "--config", str(config),
                             "run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, in_page, release


def test_overlapping_runs_are_refused(seeded, emulator, run_cli):
    """A real `civimc-audit run` in another process, held mid-snapshot, and a second one."""
    config = seeded()
    first, in_page, release = start_held_run(config, emulator)
    try:
        assert in_page.wait(60), "the first run never reached Mailchimp"
        code, _, err = run_cli("--config", config, "run")
        holder = read_owner(lock_path(config.parent / "audit.duckdb"))
    finally:
        release.set()
        emulator.on_members_page = None
        out1, err1 = first.communicate(timeout=120)
    assert code == 2 and "`run`" in err and "did not start" in err
    assert holder.pid == first.pid
    assert first.returncode == 0, err1
    assert len(runs_of(config)) == 1


def test_a_record_left_by_a_dead_run_never_blocks_the_next(seeded, run_cli):
    """A lock file whose writer is gone holds no OS lock: the next run starts at once, with
    no warning, and removes the file at its end."""
    config = seeded()
    runs = config.parent / "runs"
    runs.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock_path(config.parent / "audit.duckdb").write_text(Owner("run", dead.pid, os.uname().nodename,
                                        datetime(2000, 1, 1)).to_json())
    code, _, err = run_cli("--config", config, "run")
    assert code == 0, err
    assert "warning" not in err
    assert summary_of(runs_of(config)[0])["warnings"] == []
    assert not lock_path(config.parent / "audit.duckdb").exists()


def age_run(config, folder, stamp):
    """Pretend a run (and the snapshots it took) happened at `stamp`."""
    summary = summary_of(folder)
    old = folder.rename(folder.parent / stamp)
    when = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
    with store(config) as con:
        for snap in summary["snapshots"].values():
            con.execute("UPDATE snapshots SET started_at = ?, taken_at = ? WHERE id = ?",
                        [when, when, snap["id"]])
    return old


def test_pruning_keeps_latest_and_planned_snapshots(seeded, run_cli):
    config = seeded("keep_runs_days = 30")
    for _ in range(2):
        assert run_cli("--config", config, "run")[0] == 0
    first, second = runs_of(config)
    old1 = age_run(config, first, "20200101T000000Z")
    old2 = age_run(config, second, "20200102T000000Z")
    # A plan made from the first run's reconciliation keeps its snapshots alive.
    from civimc_audit.changes.plan import build_plan
    from civimc_audit.config import load_config
    from civimc_audit.store import Store

    with Store(load_config(config).store_file) as s:
        build_plan(s, summary_of(old1)["reconciliation_id"])

    code, _, err = run_cli("--config", config, "run")
    assert code == 0, err
    (third,) = runs_of(config)
    assert not old1.exists() and not old2.exists()
    summary = summary_of(third)
    assert sorted(summary["pruned"]["runs"]) == [old1.name, old2.name]
    assert summary["pruned"]["snapshots"] == [3, 4]  # the second run's: not latest, no plan
    assert summary["pruned"]["kept_old_snapshots"] == {"1": "referred to by a plan",
                                                       "2": "referred to by a plan"}
    with store(config, read_only=True) as con:
        assert [r[0] for r in con.execute("SELECT id FROM snapshots ORDER BY id").fetchall()] \
            == [1, 2, 5, 6]
        assert con.execute("SELECT count(*) FROM mailchimp_member WHERE snapshot_id = 4"
                           ).fetchone()[0] == 0
        recs = [r[0] for r in con.execute("SELECT id FROM reconciliations ORDER BY id").fetchall()]
        assert recs == [1, 3]
        assert con.execute("SELECT count(*) FROM outcomes WHERE reconciliation_id = 2"
                           ).fetchone()[0] == 0
    index = (config.parent / "runs" / "index.html").read_text()
    assert third.name in index and old1.name not in index and old2.name not in index


def test_a_plan_unused_for_keep_runs_days_releases_its_snapshots(seeded, run_cli):
    """Nightly plans must not keep every snapshot for ever: once a plan has been idle (not
    made, frozen or applied) for keep_runs_days, its snapshots are pruned like any other, and
    applying it is refused in one line."""
    config = seeded("keep_runs_days = 30")
    assert run_cli("--config", config, "run")[0] == 0
    for args in (["plan"], ["approve", "--all", "--reviewer", "t"],
                 ["approve", "--freeze", "--reviewer", "t"]):
        code, _, err = run_cli("--config", config, *args)
        assert code == 0, err
    assert run_cli("--config", config, "run")[0] == 0
    first, second = runs_of(config)
    age_run(config, first, "20200101T000000Z")
    age_run(config, second, "20200102T000000Z")
    with store(config) as con:
        con.execute("UPDATE plans SET created_at = '2020-01-01 01:00:00',"
                    " frozen_at = '2020-01-01 02:00:00'")
    code, _, err = run_cli("--config", config, "run")
    assert code == 0, err
    summary = summary_of(runs_of(config)[-1])
    assert sorted(summary["pruned"]["snapshots"]) == [1, 2, 3, 4]
    assert "referred to by a plan" not in summary["pruned"]["kept_old_snapshots"].values()
    code, out, err = run_cli("--config", config, "apply", "--execute")
    assert code == 2 and "can no longer be applied" in err and len(err.strip().splitlines()) == 1
    with store(config, read_only=True) as con:  # the plan itself, items and all, is kept
        assert con.execute("SELECT count(*) FROM plans").fetchone()[0] == 1


def test_pruning_never_removes_the_latest_complete_snapshot(seeded, emulator, run_cli):
    config = seeded("keep_runs_days = 1", mailchimp="retries = 1")
    assert run_cli("--config", config, "run")[0] == 0
    old = age_run(config, runs_of(config)[0], "20200101T000000Z")
    # The next run's Mailchimp snapshot fails: the old one stays the latest complete one.
    config.write_text(config.read_text().replace(emulator.base_url, "http://127.0.0.1:9/3.0"))
    code, _, err = run_cli("--config", config, "run")
    assert code == 3, err
    (failed,) = runs_of(config)
    summary = summary_of(failed)
    assert summary["steps"]["prune"] == "ok"
    assert summary["pruned"]["runs"] == [old.name]
    assert summary["pruned"]["snapshots"] == [1]  # the old CiviCRM one; 3 is newer
    assert summary["pruned"]["kept_old_snapshots"] == {"2": "latest complete mailchimp snapshot"}
    with store(config, read_only=True) as con:
        rows = con.execute("SELECT id, status FROM snapshots ORDER BY id").fetchall()
    assert rows == [(2, "complete"), (3, "complete")]


def test_a_killed_run_does_not_block_the_next(seeded, emulator, run_cli):
    """SIGKILL a real `civimc-audit run` mid-snapshot: the kernel drops its lock, so the next
    run gets it at once, and the index shows the killed run as interrupted."""
    config = seeded()
    in_page, release = threading.Event(), threading.Event()

    def hold(emu, list_id, offset):
        in_page.set()
        release.wait(60)

    emulator.on_members_page = hold
    victim = subprocess.Popen([sys.executable, "-m", "civimc_audit.cli", "--config", str(config),
                               "run"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert in_page.wait(60), "the run never reached Mailchimp"
        victim.kill()
        victim.wait(30)
    finally:
        release.set()
        emulator.on_members_page = None
    runs = config.parent / "runs"
    # Its record is left behind, not its lock.
    assert read_owner(lock_path(config.parent / "audit.duckdb")).pid == victim.pid
    (killed,) = runs_of(config)
    assert summary_of(killed)["status"] == "running"
    assert summary_of(killed)["steps"]["snapshot_mailchimp"] == "running"

    code, _, err = run_cli("--config", config, "run")
    assert code == 0, err
    assert "holds the audit store" not in err
    index = (runs / "index.html").read_text()
    row = index[index.index(f"<td>{killed.name}</td>"):]
    assert row[:row.index("</tr>")].count(">interrupted<") == 1
    assert not lock_path(config.parent / "audit.duckdb").exists()


def test_sigterm_records_the_interruption_and_releases_the_lock(seeded, emulator):
    """systemd and Airflow stop a job with SIGTERM: the run says so and unlocks."""
    config = seeded()
    job, in_page, release = start_held_run(config, emulator)
    try:
        assert in_page.wait(60), "the run never reached Mailchimp"
        job.terminate()
        job.communicate(timeout=60)
    finally:
        release.set()
        emulator.on_members_page = None
    assert job.returncode == 128 + 15
    (folder,) = runs_of(config)
    summary = summary_of(folder)
    assert summary["status"] == "failed" and summary["message"] == "run interrupted by SIGTERM"
    assert summary["steps"]["snapshot_mailchimp"] == "interrupted"
    assert summary["steps"]["report"] == "skipped"
    assert not lock_path(config.parent / "audit.duckdb").exists()
