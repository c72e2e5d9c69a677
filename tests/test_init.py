"""`civimc-audit init`: a template with every key of the README's config, the defaults it states
are the defaults, it loads once the two required values are filled in, and nothing is
overwritten."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from civimc_audit.config import load_config
from civimc_audit.config_template import TEMPLATE
from civimc_audit.errors import ConfigError

README = Path(__file__).resolve().parent.parent / "README.md"
COMMENTED = re.compile(r"^# (\w+) = (.+?)(?:\s{2,}#\s*(.*))?$")
NOT_IN_TEMPLATE = {"lock_stale_hours"}  # ignored, kept only so old configs load


def filled(text: str) -> str:
    return (text.replace('group_name = ""', 'group_name = "newsletter"')
            .replace('list_id = ""', 'list_id = "a1b2c3d4e5"'))


def sections(text: str) -> dict[str, set[str]]:
    """Section -> keys, live or commented out, of a TOML text."""
    keys: dict[str, set[str]] = {}
    section = None
    for line in text.splitlines():
        head = re.match(r"^\[(\w+)\]", line)
        if head:
            section = head.group(1)
            continue
        key = re.match(r"^#?\s*(\w+)\s*=", line)
        if section and key:
            keys.setdefault(section, set()).add(key.group(1))
    return keys


def readme_config_blocks() -> str:
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    return "\n".join(b for b in blocks if re.search(r"^\[\w+\]", b, re.M))


def test_init_writes_the_template_and_refuses_to_overwrite(run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli("init")
    assert code == 0, err
    path = tmp_path / "civimc-audit.toml"
    assert path.read_text(encoding="utf-8") == TEMPLATE and "civimc-audit.toml" in out
    path.write_text("mine", encoding="utf-8")
    code, _, err = run_cli("init")
    assert code == 2 and "already exists" in err and len(err.strip().splitlines()) == 1
    assert path.read_text(encoding="utf-8") == "mine"
    assert run_cli("--config", tmp_path / "other.toml", "init")[0] == 0
    assert run_cli("init", "--config", tmp_path / "third.toml")[0] == 0
    assert run_cli("init", tmp_path / "fourth.toml")[0] == 0
    assert all((tmp_path / n).read_text(encoding="utf-8") == TEMPLATE
               for n in ("other.toml", "third.toml", "fourth.toml"))
    code, _, err = run_cli("init", tmp_path / "missing" / "x.toml")
    assert code == 2 and "does not exist" in err


def test_the_template_is_refused_until_the_required_values_are_filled(tmp_path):
    path = tmp_path / "civimc-audit.toml"
    path.write_text(TEMPLATE, encoding="utf-8")
    with pytest.raises(ConfigError):
        load_config(path)
    path.write_text(filled(TEMPLATE), encoding="utf-8")
    config = load_config(path)
    assert config.civicrm.group_name == "newsletter"
    assert config.mailchimp.list_id == "a1b2c3d4e5"


def test_the_template_has_every_key_of_the_readme_config():
    readme, template = sections(readme_config_blocks()), sections(TEMPLATE)
    for section, keys in readme.items():
        missing = keys - template.get(section, set()) - NOT_IN_TEMPLATE
        assert not missing, f"[{section}] {missing} not in the init template"


def test_the_defaults_the_template_states_are_the_defaults(tmp_path):
    """Each commented `# key = value` is the default unless marked "unset by default", in
    which case the key is unset when left out."""
    path = tmp_path / "civimc-audit.toml"
    path.write_text(filled(TEMPLATE), encoding="utf-8")
    config = load_config(path)
    holders = {"civicrm": config.civicrm, "mailchimp": config.mailchimp,
               "policy": config.policy, "schedule": config.schedule}
    section, checked = None, 0
    for line in TEMPLATE.splitlines():
        head = re.match(r"^\[(\w+)\]", line)
        if head:
            section = head.group(1)
            continue
        m = COMMENTED.match(line)
        if not m:
            continue
        key, raw, note = m.group(1), m.group(2), m.group(3) or ""
        example = tomllib.loads(f"v = {raw}")["v"]
        if section == "store":
            actual = {"path": config.store_path, "runs_dir": config.runs_dir,
                      "lock_wait_seconds": config.lock_wait_seconds}[key]
        else:
            actual = getattr(holders[section], key)
        if isinstance(actual, tuple):
            actual = list(actual)
        if "unset by default" in note:
            assert actual is None, f"[{section}] {key} should be unset by default"
        else:
            assert actual == example, f"[{section}] {key}: template says {raw}, default {actual!r}"
        checked += 1
    assert checked == 26  # every optional key (the regex must not skip one)
