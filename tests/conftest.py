"""Shared fixtures: a real MariaDB (found or started by civimc_sandbox.localdb), a fresh CiviCRM
fixture database per test, and the Mailchimp emulator over real HTTP on a random port."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from support.browser import browser, chromium_ready  # noqa: F401 (fixtures for every test)
from support.civicrm import CiviDB
from support.values import TEST_API_KEY, TEST_LIST_ID

from civimc_audit.config import (
    ENV_CIVICRM_PASSWORD,
    ENV_CIVICRM_WRITE_PASSWORD,
    ENV_MAILCHIMP_API_KEY,
    load_config,
)
from civimc_sandbox.civicrm.fixture import CiviFixture, create_database
from civimc_sandbox.emulator import Emulator, EmulatorServer
from civimc_sandbox.localdb import ensure_server


@pytest.fixture(scope="session")
def mysql_server():
    return ensure_server()


@pytest.fixture
def civi_db(mysql_server):
    name = f"civimc_test_{uuid.uuid4().hex[:10]}"
    conn = mysql_server.connect(autocommit=False)
    create_database(conn, name)
    db = CiviDB(mysql_server, name, conn, CiviFixture(conn))
    db.group_id = db.fixture.group("newsletter", "Newsletter")
    db.fixture.commit()
    yield db
    try:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


@pytest.fixture
def emulator():
    emu = Emulator(api_key=TEST_API_KEY)
    emu.add_list(list_id=TEST_LIST_ID, name="Test audience")
    with EmulatorServer(emu) as server:
        emu.base_url = server.base_url
        yield emu


@pytest.fixture
def make_config(tmp_path: Path, civi_db, emulator, monkeypatch):
    """Write a config file for the test database + emulator; returns a loader of it."""

    def make(extra: str = "", *, user: str | None = None) -> Path:
        path = tmp_path / "civimc-audit.toml"
        path.write_text(f"""
[civicrm]
host = "{civi_db.server.host}"
port = {civi_db.server.port}
database = "{civi_db.name}"
user = "{user or civi_db.server.user}"
write_user = "{civi_db.server.user}"
group_id = {civi_db.group_id}

[mailchimp]
list_id = "{TEST_LIST_ID}"
base_url = "{emulator.base_url}"

[store]
path = "audit.duckdb"
runs_dir = "runs"
{extra}
""", encoding="utf-8")
        monkeypatch.setenv(ENV_CIVICRM_PASSWORD, civi_db.server.password)
        monkeypatch.setenv(ENV_CIVICRM_WRITE_PASSWORD, civi_db.server.password)
        monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, TEST_API_KEY)
        load_config(path)  # fail early on a bad config
        return path

    return make


@pytest.fixture
def run_cli(capfd):
    """Run the real CLI in-process; returns (exit code, stdout, stderr), captured at the file
    descriptor level so output of child processes (papermill's kernel) is included."""
    from civimc_audit.cli import main

    def run(*args):
        code = main([str(a) for a in args])
        out, err = capfd.readouterr()
        return code, out, err

    return run
