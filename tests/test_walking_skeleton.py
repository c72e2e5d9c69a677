"""The seed page's five people, from a real MariaDB and the emulator over HTTP to the report."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import duckdb
import pytest
from support.report_html import people_rows
from support.values import TEST_API_KEY, TEST_LIST_ID

from civimc_sandbox.demo import SEED, load_seed, seed_email

YEAR = 2026
EXPECTED = {
    "Wilma": ("no_change", "R5"),
    "Barney": ("remove_from_civicrm_group", "R2"),
    "Fred": ("unsubscribe_in_mailchimp", "R9"),
    "Betty": ("add_to_mailchimp", "R6"),
    "Pebbles": ("add_to_civicrm_group", "R3"),
}


@pytest.fixture
def seeded(civi_db, emulator, make_config):
    ids = load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)
    return make_config(), ids


def outcomes_by_email(run_cli, config):
    code, out, err = run_cli("--config", config, "outcomes", "--format", "json")
    assert code == 0, err
    return {row["email"]: row for row in json.loads(out)}


def test_five_seed_people_get_the_seed_outcomes(seeded, run_cli):
    config, ids = seeded
    code, out, err = run_cli("--config", config, "snapshot")
    assert code == 0, err
    assert "civicrm snapshot 1" in out and "mailchimp snapshot 2" in out
    code, out, err = run_cli("--config", config, "reconcile")
    assert code == 0, err
    assert "reconciliation 1" in out
    rows = outcomes_by_email(run_cli, config)
    assert len(rows) == 5
    for first, (outcome, rule) in EXPECTED.items():
        row = rows[seed_email(first)]
        assert (row["outcome"], row["rule"]) == (outcome, rule), first
        assert row["contact_id"] == ids[first]
        assert row["reason_code"] == ""
    barney = rows[seed_email("Barney")]
    assert barney["winner"] == "mailchimp"
    assert barney["mailchimp_changed"] == f"{YEAR}-01-02T10:00:00Z"
    assert barney["civicrm_changed"] == f"{YEAR}-01-01T10:00:00Z"
    assert barney["reason"].startswith(f"Mailchimp unsubscribed on 2 Jan {YEAR}, after CiviCRM "
                                       f"added them on 1 Jan {YEAR}: remove from the")
    assert rows[seed_email("Betty")]["mailchimp_status"] is None


def test_outcomes_formats_and_filter(seeded, run_cli):
    config, _ = seeded
    run_cli("--config", config, "snapshot")
    run_cli("--config", config, "reconcile")
    code, out, _ = run_cli("--config", config, "outcomes", "--format", "csv",
                           "--outcome", "add_to_mailchimp")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].startswith("person_id,email,contact_id,display_name,mailchimp_status")
    assert len(lines) == 2 and seed_email("Betty") in lines[1]
    code, out, _ = run_cli("--config", config, "outcomes")
    assert code == 0 and "pebbles@bedrock.example.org" in out


def test_snapshot_reads_timestamps_as_utc_whatever_the_server_zone(civi_db, emulator,
                                                                   make_config, run_cli):
    cid = civi_db.fixture.contact("Tz", "Test", email="tz@example.org")
    civi_db.fixture.add_to_group(cid, civi_db.group_id, datetime(YEAR, 3, 1, 23, 30, tzinfo=UTC))
    civi_db.fixture.commit()
    config = make_config()
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT @@GLOBAL.time_zone")
        old = cur.fetchone()[0]
        cur.execute("SET GLOBAL time_zone = '-08:00'")
    try:
        code, _, err = run_cli("--config", config, "snapshot", "--civicrm-only")
    finally:
        with civi_db.conn.cursor() as cur:
            cur.execute("SET GLOBAL time_zone = %s", (old,))
    assert code == 0, err
    con = duckdb.connect(str(config.parent / "audit.duckdb"), read_only=True)
    (date,) = con.execute("SELECT date FROM civicrm_subscription_history").fetchone()
    assert date == datetime(YEAR, 3, 1, 23, 30)


def test_every_member_is_read_across_pages(civi_db, emulator, make_config, run_cli):
    statuses = ["subscribed", "unsubscribed", "cleaned", "pending", "archived", "transactional"]
    emulator.load_members(TEST_LIST_ID, ({
        "email_address": f"m{i}@example.org", "status": statuses[i % len(statuses)],
        "last_changed": "2026-01-01T00:00:00+00:00"} for i in range(2345)))
    config = make_config()
    code, out, err = run_cli("--config", config, "snapshot", "--mailchimp-only")
    assert code == 0, err
    con = duckdb.connect(str(config.parent / "audit.duckdb"), read_only=True)
    got = dict(con.execute("SELECT status, count(*) FROM mailchimp_member GROUP BY 1").fetchall())
    assert sum(got.values()) == 2345
    assert set(got) == set(statuses)


def test_report_runs_under_papermill_and_shows_the_seed_table(seeded, run_cli):
    config, _ = seeded
    outputs = []
    for cmd in (["snapshot"], ["reconcile"], ["report"]):
        code, out, err = run_cli("--config", config, *cmd)
        assert code == 0, err
        outputs += [out, err]
    runs = sorted((config.parent / "runs").iterdir())
    assert len(runs) == 1
    run = runs[0]
    html = (run / "audit.html").read_text(encoding="utf-8")
    notebook = (run / "audit.ipynb").read_text(encoding="utf-8")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert summary["outcomes"]["add_to_mailchimp"] == 1
    people = {row["Who"].split()[0]: row for row in people_rows(html)}
    assert len(people) == len(SEED)
    for person in SEED:
        row = people[person.first]
        assert row["Outcome"] == person.expected, person.first
        assert row["Email"] == seed_email(person.first)
        assert row["Why"], person.first  # the reason sentence on every row
    cells = {cell for row in people.values() for cell in row.values()}
    assert {"subscribed 1 Jan", "removed 4 Jan", "(does not exist)", "never in group"} <= cells
    assert ("1 of 5 people already agree; 4 changes would be made, 2 of them removals; "
            "0 cannot be synced.") in html
    # The API key never reaches the notebook, the HTML, the store or any output.
    store_bytes = (config.parent / "audit.duckdb").read_bytes()
    secret = TEST_API_KEY.split("-")[0]
    for text in (html, notebook, json.dumps(summary), *outputs):
        assert secret not in text
    assert secret.encode() not in store_bytes


def test_names_are_text_not_html(civi_db, emulator, make_config, run_cli):
    cid = civi_db.fixture.contact("<b>Bold</b>", "<script>x</script>", email="b@example.org")
    civi_db.fixture.add_to_group(cid, civi_db.group_id, datetime(YEAR, 1, 1, tzinfo=UTC))
    civi_db.fixture.commit()
    config = make_config()
    for cmd in (["snapshot"], ["reconcile"], ["report"]):
        code, _, err = run_cli("--config", config, *cmd)
        assert code == 0, err
    html = next((config.parent / "runs").iterdir()).joinpath("audit.html").read_text()
    assert "<script>x</script>" not in html
    assert "&lt;b&gt;Bold&lt;/b&gt;" in html


def test_bad_config_and_missing_store_are_one_line_errors(tmp_path, run_cli, monkeypatch):
    code, _, err = run_cli("--config", tmp_path / "nope.toml", "snapshot")
    assert code == 2 and err.startswith("civimc-audit: config file not found")
    assert len(err.strip().splitlines()) == 1
    cfg = tmp_path / "c.toml"
    cfg.write_text('[civicrm]\ngroup_id = 1\n[mailchimp]\nlist_id = "x"\n')
    code, _, err = run_cli("--config", cfg, "outcomes")
    assert code == 2 and "does not exist yet" in err


def test_unreachable_mailchimp_is_a_source_failure(civi_db, emulator, make_config, run_cli,
                                                   monkeypatch):
    config = make_config()
    text = config.read_text().replace(emulator.base_url, "http://127.0.0.1:9/3.0")
    text = text.replace("[mailchimp]", "[mailchimp]\nretries = 1")
    config.write_text(text)
    code, _, err = run_cli("--config", config, "snapshot", "--mailchimp-only")
    assert code == 3
    assert "unreachable" in err and TEST_API_KEY.split("-")[0] not in err


def test_snapshot_needs_nothing_but_select(civi_db, emulator, make_config, run_cli, monkeypatch):
    load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)
    user = f"ro_{civi_db.name[-10:]}"
    with civi_db.conn.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'ro-pass'")
        cur.execute(f"CREATE USER '{user}'@'localhost' IDENTIFIED BY 'ro-pass'")
        cur.execute(f"GRANT SELECT ON `{civi_db.name}`.* TO '{user}'@'%'")
        cur.execute(f"GRANT SELECT ON `{civi_db.name}`.* TO '{user}'@'localhost'")
    try:
        config = make_config(user=user)
        monkeypatch.setenv("CIVIMC_CIVICRM_PASSWORD", "ro-pass")
        code, out, err = run_cli("--config", config, "snapshot")
        assert code == 0, err
        code, out, err = run_cli("--config", config, "reconcile")
        assert code == 0 and "add_to_mailchimp            1" in out
        monkeypatch.setenv("CIVIMC_CIVICRM_PASSWORD", "wrong")
        code, _, err = run_cli("--config", config, "snapshot", "--civicrm-only")
        assert code == 2 and "access denied" in err and "wrong" not in err
    finally:
        with civi_db.conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            cur.execute(f"DROP USER IF EXISTS '{user}'@'localhost'")
