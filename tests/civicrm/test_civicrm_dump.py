"""Rows through the command-line client (civicrm.dump): exact for any text, and a client that
cannot connect makes the snapshot read the server-packed way instead."""

from __future__ import annotations

import stat

import duckdb
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.civicrm import db_user, query, settings_for

from civimc_audit.civicrm.dump import dump_tables, find_client, select_sql
from civimc_audit.civicrm.reader import snapshot_civicrm
from civimc_audit.civicrm.stream import Field, TableRead
from civimc_audit.errors import CiviCRMError
from civimc_audit.store import Store

pytestmark = pytest.mark.skipif(find_client() is None,
                                reason="no mariadb/mysql command-line client")

READ = TableRead("civicrm_contact", "c", "c.contact_type = %(t)s", (
    Field("id", "c.id", "int", nullable=False), Field("first_name", "c.first_name", "text"),
    Field("last_name", "c.last_name", "text", nullable=False),
    Field("is_deleted", "c.is_deleted", "bool"), Field("created_date", "c.created_date", "time"),
    Field("not_on_this_site", None, "text")))

# Any text MariaDB's utf8mb4 stores (no surrogates), including the client's escape sequences,
# tabs, newlines, NUL, backslashes and the word it prints for NULL.
SPECIAL = ["", "N", "\\N", "\t", "\n", "NULL", "\\", "\\\\n", "a\\tb", "\x00", "\\0", "\r",
           "a\rb\r\n", "\\r", " padded ", "\ufeffbom", "tab\tin\\middle\n"]
TEXT = st.one_of(st.none(), st.sampled_from(SPECIAL),
                 st.text(st.characters(exclude_categories=("Cs",)), max_size=40))


def _dump(civi_db, monkeypatch, read: TableRead, params: dict) -> tuple[int, list[tuple]]:
    duck = duckdb.connect()
    duck.execute("CREATE TABLE civicrm_contact (id BIGINT, first_name VARCHAR,"
                 " last_name VARCHAR, is_deleted BOOLEAN, created_date TIMESTAMP,"
                 " not_on_this_site VARCHAR)")
    s = settings_for(civi_db, monkeypatch)
    with civi_db.server.connect(civi_db.name) as conn, conn.cursor() as cur:
        sql = cur.mogrify(select_sql(read), params)
    counts = dump_tables(find_client(), s, duck, [read], [sql],
                         session=["SET time_zone = '+00:00'"], constants={})
    return counts["civicrm_contact"], duck.execute(
        "SELECT * FROM civicrm_contact ORDER BY id").fetchall()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@example(names=[(t, t) for t in SPECIAL] + [(None, "NULL")])
@given(names=st.lists(st.tuples(TEXT, TEXT.filter(lambda t: t is not None)), min_size=1,
                      max_size=30))
def test_any_text_survives_exactly(civi_db, monkeypatch, names):
    with civi_db.conn.cursor() as cur:
        cur.execute("DELETE FROM civicrm_contact")
        cur.executemany("INSERT INTO civicrm_contact (contact_type, first_name, last_name,"
                        " is_deleted, created_date) VALUES ('Individual', %s, %s, %s,"
                        " '2024-02-29 23:59:59')",
                        [(first, last, i % 2) for i, (first, last) in enumerate(names)])
        cur.execute("INSERT INTO civicrm_contact (contact_type, first_name) VALUES ('Org', 'x')")
    civi_db.conn.commit()
    n, rows = _dump(civi_db, monkeypatch, READ, {"t": "Individual"})
    expected = query(civi_db, "SELECT id, first_name, last_name, is_deleted, created_date FROM"
                              " civicrm_contact WHERE contact_type = 'Individual' ORDER BY id")
    assert n == len(names)
    assert [r[:5] for r in rows] == [(i, first, last, bool(d), created)
                                     for i, first, last, d, created in expected]
    assert all(r[5] is None for r in rows)


def _fake_client(tmp_path, stderr: str) -> str:
    """A stand-in for the client that fails as one that cannot connect does."""
    path = tmp_path / "mariadb"
    path.write_text(f"#!/bin/sh\ncat >/dev/null\necho '{stderr}' >&2\nexit 1\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_a_client_that_cannot_connect_falls_back_to_server_packed_reads(civi_db, tmp_path,
                                                                         monkeypatch):
    f, g = civi_db.fixture, civi_db.group_id
    f.add_to_group(f.contact("A", "B", email="a@example.org"), g, "2024-01-01T00:00:00Z")
    f.commit()
    fake = _fake_client(tmp_path, "ERROR 2026 (HY000): TLS/SSL error: SSL is required")
    monkeypatch.setattr("civimc_audit.civicrm.reader.find_client", lambda: fake)
    settings_ = settings_for(civi_db, monkeypatch)
    with Store(tmp_path / "a.duckdb") as store:
        snap = snapshot_civicrm(settings_, store)
        assert snap.status == "complete" and snap.row_counts["civicrm_group_contact"] == 1
        assert snap.meta["transport"].startswith("server-packed (the command-line client could "
                                                 "not connect: ERROR 2026")
        with pytest.raises(CiviCRMError, match="could not connect") as err:
            snapshot_civicrm(settings_, store, transport="client")
        assert "\n" not in str(err.value)
        assert store.latest_snapshot("civicrm").id == snap.id
        assert [x.status for x in store.snapshots()] == ["complete", "failed"]


def test_the_client_gets_its_password_and_nothing_else_through_its_environment(
        civi_db, tmp_path, monkeypatch):
    seen = tmp_path / "argv"
    path = tmp_path / "mariadb"
    path.write_text(f"#!/bin/sh\necho \"$@\" > {seen}\nenv > {seen}.env\ncat >/dev/null\n"
                    "echo 'ERROR 2003 (HY000): cannot connect' >&2\nexit 1\n")
    path.chmod(0o700)
    monkeypatch.setattr("civimc_audit.civicrm.reader.find_client", lambda: str(path))
    monkeypatch.setenv("MYSQL_HOST", "192.0.2.1")  # would redirect a client that read it
    monkeypatch.setenv("CIVIMC_MAILCHIMP_API_KEY", "0123456789abcdef0123456789abcdef-us1")
    with db_user(civi_db, "SELECT") as (user, pw), Store(tmp_path / "a.duckdb") as store:
        settings_ = settings_for(civi_db, monkeypatch, user=user, password=pw)
        with pytest.raises(CiviCRMError) as err:
            snapshot_civicrm(settings_, store, transport="client")
        assert pw not in str(err.value)
    argv = seen.read_text()
    assert "--no-defaults" in argv and f"--user={user}" in argv and pw not in argv
    env = (tmp_path / "argv.env").read_text()
    assert f"MYSQL_PWD={pw}" in env and "MYSQL_HOST" not in env and "MAILCHIMP" not in env
    assert "CIVIMC_CIVICRM_WRITE_PASSWORD" not in env


# The pump's child: lines (one far longer than the pump's buffer), then a pause until the
# pump has fed on what came (a client waiting for a lock while the caller watches the rows).
_WRITER = r"""
import select, sys
out = sys.stdout.buffer
out.write(b"1\tshort\n" + b"2\t" + b"x" * 5000 + b"\n3\tpart")
out.flush()
out.write(b"ial\n")
out.flush()
if not select.select([sys.stdin], [], [], 20)[0] or sys.stdin.readline() != "go\n":
    sys.exit(3)
out.write(b"4\tafter the pause\n5\tno newline at the end")
"""


def test_the_pump_feeds_whole_lines_of_any_length_and_does_not_wait_out_a_pause(monkeypatch):
    import subprocess
    import sys

    import civimc_audit.civicrm.dump as dump

    monkeypatch.setattr(dump, "READ_BYTES", 64)
    monkeypatch.setattr(dump, "FEED_BYTES", 16)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)

    class Recorder:
        def __init__(self):
            self.parts: list[bytes] = []

        def feed(self, part):
            self.parts.append(bytes(part))
            if b"3\tpartial\n" in b"".join(self.parts) and not proc.stdin.closed:
                proc.stdin.write(b"go\n")
                proc.stdin.close()

    out = Recorder()
    try:
        dump._pump(proc, out)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.wait() == 0
    assert b"".join(out.parts) == (b"1\tshort\n2\t" + b"x" * 5000 + b"\n3\tpartial\n"
                                   b"4\tafter the pause\n5\tno newline at the end")
    assert all(p.endswith(b"\n") for p in out.parts[:-1])
