"""`civimc-audit check`: reads, the group, the write account's privileges and the audience."""

from __future__ import annotations

from support.civicrm import db_user

README_GRANTS = ("SELECT", "INSERT, UPDATE ON civicrm_group_contact",
                 "INSERT ON civicrm_subscription_history", "INSERT ON civicrm_contact",
                 "INSERT, UPDATE ON civicrm_email")


def _with_writer(config, user):
    text = config.read_text()
    start = text.index("write_user = ")
    end = text.index("\n", start)
    config.write_text(text[:start] + f'write_user = "{user}"' + text[end:])


def test_check_passes_with_the_documented_writer_grants(civi_db, make_config, run_cli,
                                                        monkeypatch):
    config = make_config()
    with db_user(civi_db, *README_GRANTS) as (user, pw):
        _with_writer(config, user)
        monkeypatch.setenv("CIVIMC_CIVICRM_WRITE_PASSWORD", pw)
        code, out, err = run_cli("--config", config, "check")
    assert code == 0, err
    assert f"write account '{user}' has the privileges apply needs" in out
    assert "audience" in out and "exists" in out


def test_check_names_a_missing_writer_privilege(civi_db, make_config, run_cli, monkeypatch):
    config = make_config()
    grants = README_GRANTS[:-1] + ("INSERT ON civicrm_email",)  # no UPDATE on civicrm_email
    with db_user(civi_db, *grants) as (user, pw):
        _with_writer(config, user)
        monkeypatch.setenv("CIVIMC_CIVICRM_WRITE_PASSWORD", pw)
        code, _, err = run_cli("--config", config, "check")
    assert code == 2
    assert err.strip() == (f"civimc-audit: CiviCRM write account '{user}' lacks UPDATE on "
                           "civicrm_email (see README for the grants)")
    assert pw not in err


def test_check_says_when_the_writer_is_not_checked(civi_db, make_config, run_cli, monkeypatch):
    config = make_config()
    monkeypatch.delenv("CIVIMC_CIVICRM_WRITE_PASSWORD")
    code, out, err = run_cli("--config", config, "check")
    assert code == 0, err
    assert "not checked (CIVIMC_CIVICRM_WRITE_PASSWORD is not set)" in out
