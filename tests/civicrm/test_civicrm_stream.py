"""The packed-chunk row mover: exact for any text, and correct when chunks overflow and split."""

from __future__ import annotations

import duckdb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.civicrm import query

from civimc_audit.civicrm.stream import Field, TableRead, stream_table

READ = TableRead("civicrm_contact", "c", "c.contact_type = %(t)s", (
    Field("id", "c.id", "int"), Field("first_name", "c.first_name", "text"),
    Field("is_deleted", "c.is_deleted", "bool"), Field("created_date", "c.created_date", "time"),
    Field("not_on_this_site", None, "text")))

# Any text MariaDB's utf8mb4 stores (no surrogates), including tabs, newlines, backslashes and
# the NULL marker itself.
TEXT = st.one_of(st.none(), st.sampled_from(["", "N", "\\N", "\t", "\n", "NULL", "\r", "a\r\nb", "\"q\""]),
                 st.text(st.characters(exclude_categories=("Cs",)), max_size=40))


def _copy(civi_db, max_bytes, first_span=20_000):
    duck = duckdb.connect()
    with civi_db.server.connect(civi_db.name) as conn, conn.cursor() as cur:
        n = stream_table(cur, duck, READ, "t", {"t": "Individual"}, max_bytes=max_bytes, create=True,
                         first_span=first_span)
    rows = duck.execute("SELECT * FROM t ORDER BY id").fetchall()
    return n, rows


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(names=st.lists(TEXT, min_size=1, max_size=30))
def test_any_text_survives_exactly(civi_db, names):
    with civi_db.conn.cursor() as cur:
        cur.execute("DELETE FROM civicrm_contact")
        cur.executemany("INSERT INTO civicrm_contact (contact_type, first_name, is_deleted,"
                        " created_date) VALUES ('Individual', %s, %s, '2024-02-29 23:59:59')",
                        [(n, i % 2) for i, n in enumerate(names)])
        cur.execute("INSERT INTO civicrm_contact (contact_type, first_name) VALUES ('Org', 'x')")
    civi_db.conn.commit()
    n, rows = _copy(civi_db, max_bytes=1 << 20)
    expected = query(civi_db, "SELECT id, first_name, is_deleted, created_date FROM"
                              " civicrm_contact WHERE contact_type = 'Individual' ORDER BY id")
    assert n == len(names)
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (i, name, bool(d), created) for i, name, d, created in expected]
    assert all(r[4] is None for r in rows)


def test_overflowing_chunks_are_split_and_nothing_is_lost(civi_db):
    f = civi_db.fixture
    ids = [f.contact("x" * 60 + str(i), "Long") for i in range(400)]
    f.contact(None, None, contact_type="Organization")  # filtered out
    f.commit()
    # ~140 bytes a row against 4000-byte chunks: the first 20,000-id range overflows many times.
    n, rows = _copy(civi_db, max_bytes=4000)
    assert n == 400 and [r[0] for r in rows] == ids
    assert rows[7][1] == "x" * 60 + "7"
