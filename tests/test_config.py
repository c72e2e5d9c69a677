"""The config is checked when it is loaded: every wrong value is one line naming the file, the
section, the key, the value and what is allowed (exit 2, before anything runs), and no valid
config is ever refused."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from civimc_audit.common.codes import OUTCOME_CODES
from civimc_audit.config import (
    ENV_CIVICRM_PASSWORD,
    MailchimpSettings,
    PolicySettings,
    config_from_dict,
    load_config,
)
from civimc_audit.errors import ConfigError
from civimc_sandbox.demo import Demo
from civimc_sandbox.localdb import Server

ROOT = Path(__file__).resolve().parents[1]

BASE = {
    "civicrm": {"host": '"127.0.0.1"', "port": "3306", "database": '"civicrm"',
                "user": '"civimc_reader"', "group_id": "42"},
    "mailchimp": {"list_id": '"a1b2c3d4e5"', "base_url": '"http://127.0.0.1:9/3.0"'},
    "store": {"path": '"audit.duckdb"', "runs_dir": '"runs"'},
}


def toml_text(sections: dict[str, dict[str, str]]) -> str:
    """A config file from {section: {key: value as written}}."""
    return "".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items()) + "\n"
                   for name, keys in sections.items())


def with_key(section: str, key: str, written: str) -> dict:
    sections = {name: dict(keys) for name, keys in BASE.items()}
    sections.setdefault(section, {})[key] = written
    return sections


# (section, key, value as written, words the line must hold)
BAD = [
    ("policy", "honor_civicrm_consent", '"false"', "must be true or false (unquoted)"),
    ("policy", "honor_civicrm_consent", '"true"', "must be true or false (unquoted)"),
    ("policy", "honor_civicrm_consent", "1", "must be true or false"),
    ("civicrm", "on_hold_when_cleaned", '"no"', "must be true or false"),
    ("schedule", "fail_on_cannot_sync", '"false"', "must be true or false (unquoted)"),
    ("mailchimp", "max_connections", '"5"', "a whole number between 1 and 10 (unquoted)"),
    ("mailchimp", "max_connections", "0", "between 1 and 10"),
    ("mailchimp", "max_connections", "11", "between 1 and 10"),
    ("mailchimp", "max_connections", "5.0", "whole number between 1 and 10 (without a decimal"),
    ("mailchimp", "retries", "-1", "a whole number, 0 or more"),
    ("mailchimp", "retries", '"6"', "a whole number, 0 or more (unquoted)"),
    ("mailchimp", "timeout", "0", "a number more than 0"),
    ("mailchimp", "timeout", "-5", "a number more than 0"),
    ("mailchimp", "timeout", '"120"', "a number more than 0 (unquoted)"),
    ("mailchimp", "timeout", "inf", "not inf or nan"),
    ("mailchimp", "list_id", '""', "the audience id"),
    ("mailchimp", "list_id", '"a1b2 c3d4"', "letters and digits"),
    ("mailchimp", "list_id", "42", "the audience id in quotes"),
    ("mailchimp", "base_url", '"127.0.0.1:8765/3.0"', "starting with http:// or https://, either "
     "https://<dc>.api.mailchimp.com/3.0 or an address on this machine"),
    ("civicrm", "port", '"abc"', "a whole number between 1 and 65535"),
    ("civicrm", "port", '"3306"', "between 1 and 65535 (unquoted)"),
    ("civicrm", "port", "0", "between 1 and 65535"),
    ("civicrm", "port", "65536", "between 1 and 65535"),
    ("civicrm", "port", "-1", "between 1 and 65535"),
    ("civicrm", "group_id", "0", "a whole number, 1 or more"),
    ("civicrm", "group_id", "-4", "a whole number, 1 or more"),
    ("civicrm", "group_id", '"42"', "a whole number, 1 or more (unquoted)"),
    ("civicrm", "group_id", "4.0", "(without a decimal point)"),
    ("civicrm", "group_id", "true", "a whole number, 1 or more"),
    ("civicrm", "host", '""', "not empty"),
    ("civicrm", "user", "5", "text in quotes"),
    ("civicrm", "timezone", '"Europe/Londn"', 'an IANA time zone name in quotes'),
    ("policy", "tie_winner", '"both"', 'one of "civicrm" or "mailchimp"'),
    ("policy", "tie_winner", '"CiviCRM"', 'one of "civicrm" or "mailchimp"'),
    ("schedule", "keep_runs_days", "-3", "a number more than 0"),
    ("schedule", "keep_runs_days", "0", "a number more than 0"),
    ("schedule", "keep_runs_days", "-0.5", "a number more than 0"),
    ("schedule", "keep_runs_days", '"90"', "a number more than 0 (unquoted)"),
    ("schedule", "keep_runs_days", "nan", "not inf or nan"),
    ("schedule", "max_removals", '"fifty"', "a whole number, 0 or more"),
    ("schedule", "max_removals", '"50"', "a whole number, 0 or more (unquoted)"),
    ("schedule", "max_removals", "-1", "a whole number, 0 or more"),
    ("schedule", "max_removal_percent", '"5"', "a number between 0 and 100 (unquoted)"),
    ("schedule", "max_removal_percent", '"five"', "a number between 0 and 100"),
    ("schedule", "max_removal_percent", "101", "a number between 0 and 100"),
    ("schedule", "max_removal_percent", "-1", "a number between 0 and 100"),
    ("schedule", "max_snapshot_age_hours", "0", "a number more than 0"),
    ("schedule", "max_snapshot_age_hours", '"24"', "(unquoted)"),
    ("schedule", "lock_stale_hours", "-1", "a number more than 0"),
    ("schedule", "auto_approve", '"add_to_mailchimp"', "a list of outcome codes in brackets"),
    ("schedule", "auto_approve", '["add_to_mailchimp", "remove"]',
     '"remove" is not allowed: must be a list of outcome codes'),
    ("schedule", "auto_approve", "[1]", "1 is not allowed"),
    ("schedule", "auto_approve", "true", "a list of outcome codes"),
    ("store", "path", '""', "not empty"),
    ("store", "runs_dir", "false", "text in quotes"),
    ("store", "lock_wait_seconds", "-1", "a number between 0 and 86400"),
    ("store", "lock_wait_seconds", '"30"', "(unquoted)"),
    ("interests", "ABCDEF1234", "17", "10 hex digits in lower case"),
    ("interests", "9f8e7d6c5", "17", "10 hex digits in lower case"),
    ("interests", "9f8e7d6c5b", "0", "a CiviCRM group id: a whole number, 1 or more"),
    ("interests", "9f8e7d6c5b", "-2", "a CiviCRM group id"),
    ("interests", "9f8e7d6c5b", '"17"', "a CiviCRM group id: a whole number, 1 or more (unquoted)"),
    ("interests", "9f8e7d6c5b", "1.5", "(without a decimal point)"),
    ("policy", "honour_civicrm_consent", "true", "unknown key (did you mean honor_civicrm_consent?)"),
    ("policy", "keep_runs_days", "3", "unknown key (it belongs in [schedule])"),
    ("mailchimp", "list", '"a1b2c3d4e5"', "unknown key (did you mean list_id?)"),
    ("civicrm", "colour", '"blue"', "unknown key; [civicrm] has host, port"),
]


def refused(run_cli, tmp_path, text: str, command: str = "run") -> str:
    """Run the real CLI on a config file: exit 2, one line, nothing done; returns the line."""
    path = tmp_path / "civimc-audit.toml"
    path.write_text(text, encoding="utf-8")
    code, out, err = run_cli("--config", path, command)
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "audit.duckdb").exists()
    return err.strip()


@pytest.mark.parametrize("section, key, written, words", BAD,
                         ids=[f"{s}.{k}={v}" for s, k, v, _ in BAD])
def test_a_wrong_value_is_one_line_naming_file_section_key_value_and_what_is_allowed(
        section, key, written, words, tmp_path, run_cli):
    line = refused(run_cli, tmp_path, toml_text(with_key(section, key, written)))
    path = (tmp_path / "civimc-audit.toml").resolve()
    assert line.startswith(f"civimc-audit: {path}: [{section}] {key} = {written}: "), line
    assert words in line, line
    assert "Traceback" not in line and "pydantic" not in line and "Input should" not in line


@pytest.mark.parametrize("command", ["check", "snapshot", "reconcile", "report", "plan"])
def test_every_command_refuses_before_doing_anything(command, tmp_path, run_cli):
    line = refused(run_cli, tmp_path, toml_text(with_key("schedule", "max_removals", '"fifty"')),
                   command)
    assert "[schedule] max_removals = \"fifty\": must be a whole number, 0 or more" in line


@pytest.mark.parametrize("change, words", [
    ({"civicrm": {"group_name": '"newsletter"'}},
     '[civicrm] group_id = 42, group_name = "newsletter": give group_id or group_name, not both'),
    ({"civicrm": {"socket": '"/run/mysqld/mysqld.sock"'}},
     '[civicrm] socket = "/run/mysqld/mysqld.sock", host = "127.0.0.1", port = 3306: give socket '
     "or host and port, not both"),
    ({"interests": {"9f8e7d6c5b": "17", "1a2b3c4d5e": "17"}},
     "[interests] 9f8e7d6c5b = 17, 1a2b3c4d5e = 17: CiviCRM group 17 is mapped to two interests"),
])
def test_keys_that_exclude_each_other(change, words, tmp_path, run_cli):
    sections = {name: dict(keys) for name, keys in BASE.items()}
    for name, keys in change.items():
        sections.setdefault(name, {}).update(keys)
    assert words in refused(run_cli, tmp_path, toml_text(sections))


@pytest.mark.parametrize("drop, words", [
    (("civicrm", "group_id"), "[civicrm]: needs group_id (a whole number, 1 or more) or group_name"),
    (("mailchimp", "list_id"), "[mailchimp]: needs list_id"),
])
def test_a_missing_key_is_named(drop, words, tmp_path, run_cli):
    sections = {name: dict(keys) for name, keys in BASE.items()}
    del sections[drop[0]][drop[1]]
    assert words in refused(run_cli, tmp_path, toml_text(sections))


@pytest.mark.parametrize("text, words", [
    ('[polcy]\ntie_winner = "civicrm"\n', "[polcy]: unknown section (did you mean [policy]?)"),
    ("[extras]\na = 1\n", "[extras]: unknown section; the sections: civicrm, mailchimp"),
    ("policy = 3\n", "[policy] must be a table"),
    ("keep_runs_days = 3\n", "keep_runs_days = 3: a key outside any section; it belongs under "
                             "[schedule]"),
    ("[civicrm\n", "not valid TOML"),
])
def test_the_shape_of_the_file(text, words, tmp_path, run_cli):
    assert words in refused(run_cli, tmp_path, text + toml_text(BASE))


def test_a_secret_in_the_file_is_refused_without_showing_it(tmp_path, run_cli, monkeypatch):
    monkeypatch.delenv(ENV_CIVICRM_PASSWORD, raising=False)
    for key in ("password", "db_password", "api_token"):
        sections = with_key("civicrm", key, '"hunter2-very-secret"')
        line = refused(run_cli, tmp_path, toml_text(sections))
        assert f"[civicrm] {key}" in line and "hunter2" not in line, line
    line = refused(run_cli, tmp_path, toml_text(with_key("civicrm", "password", '"x"')))
    assert f"set {ENV_CIVICRM_PASSWORD} in the environment" in line


def test_several_problems_name_the_first_and_count_the_rest(tmp_path, run_cli):
    sections = with_key("policy", "honor_civicrm_consent", '"false"')
    sections["schedule"] = {"keep_runs_days": "-3", "max_removals": '"fifty"'}
    line = refused(run_cli, tmp_path, toml_text(sections))
    assert '[policy] honor_civicrm_consent = "false"' in line and line.endswith("(and 2 more problems)")


def test_settings_built_in_code_are_checked_too():
    with pytest.raises(ValidationError):
        MailchimpSettings(max_connections="5")
    with pytest.raises(ValidationError):
        PolicySettings(honor_civicrm_consent="false")
    assert PolicySettings(tie_winner="mailchimp") == PolicySettings(tie_winner="mailchimp")
    assert hash(MailchimpSettings()) == hash(MailchimpSettings())


def test_a_whole_number_is_a_number_and_lists_are_frozen(tmp_path):
    sections = with_key("schedule", "max_removal_percent", "5")
    sections["schedule"].update(keep_runs_days="90", auto_approve='["add_to_mailchimp"]')
    sections["interests"] = {"9f8e7d6c5b": "17", "1a2b3c4d5e": "18"}
    path = tmp_path / "c.toml"
    path.write_text(toml_text(sections), encoding="utf-8")
    config = load_config(path)
    assert config.schedule.max_removal_percent == 5.0
    assert isinstance(config.schedule.max_removal_percent, float)
    assert config.schedule.auto_approve == ("add_to_mailchimp",)
    assert config.interests == {"9f8e7d6c5b": 17, "1a2b3c4d5e": 18}
    assert config.store_file == tmp_path / "audit.duckdb"
    assert hash(config) == hash(load_config(path))


# Valid configs are never refused ---------------------------------------------------------------
def toml_blocks(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    return [tomllib.loads(block) for block in re.findall(r"```toml\n(.*?)```", text, re.S)]


def merged(base: dict, extra: dict) -> dict:
    out = {name: dict(keys) for name, keys in base.items()}
    for name, keys in extra.items():
        out.setdefault(name, {}).update(keys)
    return out


def test_the_documented_configs_are_accepted():
    readme, design = toml_blocks(ROOT / "README.md"), toml_blocks(ROOT / "docs" / "design.md")
    assert readme and design
    full = readme[0]
    assert {"civicrm", "mailchimp", "store", "policy", "schedule"} <= set(full)
    for block in readme + design:
        config = config_from_dict(merged(full, block))
        assert config.civicrm.group_id == 42 or "group_id" in block.get("civicrm", {})
    with_interests = config_from_dict(merged(full, next(b for b in design if "interests" in b)))
    assert with_interests.interests == {"9f8e7d6c5b": 17, "1a2b3c4d5e": 18}


# What the test suite and the sandbox add to their configs (each is also loaded by its own test).
TEST_EXTRAS = [
    "[schedule]\nkeep_runs_days = 30", "[schedule]\nkeep_runs_days = 1",
    "[schedule]\nfail_on_cannot_sync = true", "[schedule]\nmax_snapshot_age_hours = 24",
    '[schedule]\nauto_approve = ["add_to_mailchimp", "add_to_civicrm_group"]\nmax_removals = 1',
    '[schedule]\nauto_approve = ["no_change", "add_to_mailchimp", "resubscribe_in_mailchimp",'
    ' "unsubscribe_in_mailchimp", "add_to_civicrm_group", "remove_from_civicrm_group",'
    ' "cannot_sync"]', '[policy]\ntie_winner = "mailchimp"', "[policy]\nhonor_civicrm_consent = true",
    "[mailchimp]\nretries = 1", "[schedule]\nlock_stale_hours = 12",
]


@pytest.mark.parametrize("extra", TEST_EXTRAS)
def test_what_the_tests_write_is_accepted(extra):
    config_from_dict(merged(tomllib.loads(toml_text(BASE)), tomllib.loads(extra)))


def test_the_demo_and_the_smallest_configs_are_accepted(tmp_path):
    demo = Demo(tmp_path / "demo")
    demo.folder.mkdir(parents=True)
    demo.write_config(Server(), 7, "http://127.0.0.1:8765/3.0")
    assert load_config(demo.config_path).civicrm.group_id == 7
    tiny = tmp_path / "c.toml"
    tiny.write_text('[civicrm]\ngroup_id = 1\n[mailchimp]\nlist_id = "x"\n')
    assert load_config(tiny).mailchimp.list_id == "x"
    sock = tmp_path / "s.toml"
    sock.write_text('[civicrm]\nsocket = "/run/mysqld/mysqld.sock"\ngroup_name = "newsletter"\n'
                    '[mailchimp]\nlist_id = "b3nchb3nch"\n')
    assert load_config(sock).civicrm.socket == "/run/mysqld/mysqld.sock"


def positive(low: float = 1e-6) -> st.SearchStrategy:
    return st.one_of(st.integers(1, 10**6),
                     st.floats(low, 1e6, allow_nan=False, allow_infinity=False))


text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
where = st.one_of(
    st.fixed_dictionaries({}, optional={"host": text, "port": st.integers(1, 65535)}),
    st.fixed_dictionaries({"socket": text}))
group = st.one_of(st.fixed_dictionaries({"group_id": st.integers(1, 2**63 - 1)}),
                  st.fixed_dictionaries({"group_name": text}))
civicrm = st.tuples(where, group, st.fixed_dictionaries({}, optional={
    "database": text, "user": text, "write_user": text, "on_hold_when_cleaned": st.booleans(),
    "timezone": st.sampled_from(["UTC", "Europe/London", "America/New_York", "Asia/Kolkata",
                                 "Pacific/Chatham", "Etc/GMT+5"]),
})).map(lambda parts: {k: v for part in parts for k, v in part.items()})
mailchimp = st.fixed_dictionaries(
    {"list_id": st.from_regex(r"[0-9A-Za-z]{1,64}", fullmatch=True)},
    optional={"base_url": st.one_of(  # the key goes only to Mailchimp's host or this machine
        st.from_regex(r"https://[a-z]{1,3}[0-9]{1,3}\.api\.mailchimp\.com(/[a-z0-9.]*)?",
                      fullmatch=True),
        st.tuples(st.sampled_from(["http", "https"]),
                  st.sampled_from(["127.0.0.1", "127.9.8.7", "localhost", "[::1]"]),
                  st.integers(1, 65535), st.from_regex(r"(/[a-z0-9.]*)?", fullmatch=True))
        .map(lambda p: f"{p[0]}://{p[1]}:{p[2]}{p[3]}")),
              "max_connections": st.integers(1, 10), "timeout": positive(),
              "retries": st.integers(0, 1000)})
policy = st.fixed_dictionaries({}, optional={
    "honor_civicrm_consent": st.booleans(), "tie_winner": st.sampled_from(["civicrm", "mailchimp"])})
schedule = st.fixed_dictionaries({}, optional={
    "max_removals": st.integers(0, 10**9),
    "max_removal_percent": st.one_of(st.integers(0, 100), st.floats(0, 100)),
    "fail_on_cannot_sync": st.booleans(), "max_snapshot_age_hours": positive(),
    "keep_runs_days": positive(), "lock_stale_hours": positive(),
    "auto_approve": st.lists(st.sampled_from(OUTCOME_CODES))})
interests = st.lists(st.from_regex(r"[0-9a-f]{10}", fullmatch=True), unique=True, max_size=6).flatmap(
    lambda ids: st.lists(st.integers(1, 10**9), min_size=len(ids), max_size=len(ids), unique=True)
    .map(lambda groups: dict(zip(ids, groups, strict=True))))
valid = st.fixed_dictionaries({"civicrm": civicrm, "mailchimp": mailchimp}, optional={
    "policy": policy, "schedule": schedule, "interests": interests,
    "store": st.fixed_dictionaries({}, optional={"path": text, "runs_dir": text,
                                                 "lock_wait_seconds": st.integers(0, 86400)})})


@settings(max_examples=300, deadline=None)
@given(valid)
def test_valid_values_within_range_are_never_refused(data):
    try:
        config = config_from_dict(data)
    except ConfigError as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"refused a valid config: {exc}")
    for section in ("civicrm", "mailchimp", "policy", "schedule"):
        got = getattr(config, section)
        for key, value in data.get(section, {}).items():
            assert getattr(got, key) == (tuple(value) if isinstance(value, list) else value)
    assert config.interests == data.get("interests", {})
