"""One normalisation of email addresses (civimc_audit.emails): Python, DuckDB's SQL macro,
Mailchimp's member hash in the client and in the emulator, and the reconciliation all agree."""

from __future__ import annotations

import hashlib

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from civimc_audit.common.emails import WHITESPACE, install_sql_macros, normalize_email, strip_email
from civimc_audit.config import PolicySettings
from civimc_audit.mailchimp.client import member_hash as client_hash
from civimc_audit.reconcile import reconcile
from civimc_audit.store import Store
from civimc_sandbox.emulator import member_hash as emulator_hash
from civimc_sandbox.population import Case, instantiate, write_store


@pytest.fixture(scope="module")
def con():
    c = duckdb.connect()
    install_sql_macros(c)
    yield c
    c.close()


def sql(con, fn, s):
    return con.execute(f"SELECT {fn}(?)", [s]).fetchone()[0]


@pytest.mark.parametrize("pad", ["\t", "\n", "\r", "\r\n", "\u00a0", " ", "\x0b", "\x0c",
                                 "\u2003", "\u3000", " \t\u00a0\n"])
def test_every_kind_of_whitespace_is_stripped_at_both_ends(con, pad):
    stored = f"{pad}Ann@Example.ORG{pad}"
    assert normalize_email(stored) == "ann@example.org"
    assert strip_email(stored) == "Ann@Example.ORG"
    assert sql(con, "normalize_email", stored) == "ann@example.org"
    assert sql(con, "strip_email", stored) == "Ann@Example.ORG"
    assert client_hash(stored) == emulator_hash(stored) == \
        hashlib.md5(b"ann@example.org").hexdigest()


@pytest.mark.parametrize("stored", ["Ann@Example.ORG", "\tAnn@Example.ORG\u00a0\r\n", "  a b@x.org "])
def test_the_sql_member_hash_is_the_python_one(con, stored):
    assert sql(con, "member_hash", stored) == client_hash(stored) == emulator_hash(stored)


def test_plain_sql_trim_is_not_enough(con):
    # Why the macro exists: DuckDB's trim() keeps tabs and line breaks (MySQL's TRIM too).
    assert con.execute("SELECT trim(?)", ["a@x.org\n"]).fetchone()[0] == "a@x.org\n"
    assert con.execute("SELECT trim(?)", ["\ta@x.org"]).fetchone()[0] == "\ta@x.org"


def test_whitespace_inside_and_non_space_characters_are_kept(con):
    for s in ("a b@x.org", "\u200ba@x.org", "a@x.org\u200b", "a\t@x.org"):
        assert normalize_email(s) == s.lower()
        assert sql(con, "normalize_email", s) == s.lower()
    assert sql(con, "normalize_email", None) is None


def test_the_whitespace_set_is_pythons():
    assert set(WHITESPACE) == {chr(c) for c in range(0x110000) if chr(c).isspace()}
    assert {"\t", "\n", "\r", "\u00a0", " "} <= set(WHITESPACE)


ascii_or_space = st.text(alphabet=st.sampled_from(list(WHITESPACE) + list("aB@.x-_Z")),
                         max_size=12)


@settings(max_examples=300, deadline=None)
@given(s=ascii_or_space)
def test_sql_and_python_agree(con, s):
    assert sql(con, "normalize_email", s) == normalize_email(s)
    assert sql(con, "strip_email", s) == strip_email(s)


def test_reconciliation_names_the_stripped_address():
    """A CiviCRM address stored with a tab, NBSP and line break is sent to Mailchimp clean."""
    population = instantiate([Case("w", "a:UW +1", "", "#1 add_to_mailchimp R6")])
    with Store(":memory:") as store:
        civi, mc = write_store(store, population)
        rec = reconcile(store, PolicySettings(), civicrm_snapshot_id=civi,
                        mailchimp_snapshot_id=mc)
        email, target = store.con.execute(
            "SELECT email, target_email FROM outcomes WHERE reconciliation_id = ?",
            [rec["id"]]).fetchone()
    address = population.instances[0].address("a").upper()
    assert email == target == address


def test_resume_finds_owners_whatever_whitespace_civicrm_stored(civi_db, monkeypatch):
    """Settling an interrupted apply looks contacts up by address in MariaDB, whose TRIM strips
    only spaces: the shared pattern must find "\\tA@x.org\\n" for "a@x.org"."""
    from support.civicrm import settings_for

    from civimc_audit.civicrm.live import LiveCiviCRM

    f, g = civi_db.fixture, civi_db.group_id
    padded = f.contact("Pad", "Ded", email="\tWS@example.org\u00a0\r\n")
    f.add_to_group(padded, g, "2024-01-01T00:00:00Z")
    other = f.contact("Other", "One", email="other@example.org")
    f.commit()
    with LiveCiviCRM.open(settings_for(civi_db, monkeypatch)) as live:
        found = live.contacts_owning(g, ["ws@example.org", " Other@Example.org",
                                         "none@example.org"])
    assert found == {"ws@example.org": [(padded, "Added")],
                     "other@example.org": [(other, None)], "none@example.org": []}
