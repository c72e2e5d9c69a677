"""Helpers for the CiviCRM tests: settings for a test database and throw-away MariaDB accounts."""

from __future__ import annotations

import secrets
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from civimc_audit.config import ENV_CIVICRM_PASSWORD, ENV_CIVICRM_WRITE_PASSWORD, CiviCRMSettings
from civimc_sandbox.civicrm.fixture import CiviFixture


@dataclass
class CiviDB:
    """A fresh fixture database and a writer for it."""

    server: object
    name: str
    conn: object
    fixture: CiviFixture
    group_id: int | None = None


def settings_for(civi_db, monkeypatch, *, user=None, password=None, write_user=None,
                 write_password=None, **extra) -> CiviCRMSettings:
    """CiviCRMSettings for the test database; passwords go to the environment, as in real use."""
    server = civi_db.server
    monkeypatch.setenv(ENV_CIVICRM_PASSWORD, server.password if password is None else password)
    monkeypatch.setenv(ENV_CIVICRM_WRITE_PASSWORD,
                       server.password if write_password is None else write_password)
    extra.setdefault("group_id", civi_db.group_id)
    return CiviCRMSettings(host=server.host, port=server.port, database=civi_db.name,
                           user=user or server.user, write_user=write_user or server.user, **extra)


@contextmanager
def db_user(civi_db, *grants: str):
    """A uniquely named account with the given grants on the test database (e.g. "SELECT",
    "INSERT ON civicrm_group_contact"); yields (user, password) and drops the account after."""
    user = f"civimc_t_{uuid.uuid4().hex[:8]}"
    password = secrets.token_hex(12)
    with civi_db.server.connect() as admin, admin.cursor() as cur:
        cur.execute(f"CREATE USER '{user}'@'%%' IDENTIFIED BY %s", (password,))
        for grant in grants:
            priv, _, table = grant.partition(" ON ")
            cur.execute(f"GRANT {priv} ON `{civi_db.name}`.{table or '*'} TO '{user}'@'%'")
    try:
        yield user, password
    finally:
        with civi_db.server.connect() as admin, admin.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")


def query(civi_db, sql: str, args=()) -> list[tuple]:
    """Rows from the test database as the administrator sees them now (UTC session)."""
    with civi_db.server.connect(civi_db.name) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


@contextmanager
def variant_db(mysql_server, variant: str, timezone: str | None = None):
    """A fresh fixture database of a schema variant, with a 'newsletter' group; yields a
    CiviDB-like object (server, name, conn, fixture, group_id) and drops the database after."""
    from conftest import CiviDB

    from civimc_sandbox.civicrm.fixture import CiviFixture, create_database

    name = f"civimc_test_{uuid.uuid4().hex[:10]}"
    conn = mysql_server.connect(autocommit=False)
    try:
        create_database(conn, name, variant=variant)
        db = CiviDB(mysql_server, name, conn, CiviFixture(conn, timezone=timezone))
        db.group_id = db.fixture.group("newsletter", "Newsletter")
        db.fixture.commit()
        yield db
    finally:
        conn.rollback()
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()
