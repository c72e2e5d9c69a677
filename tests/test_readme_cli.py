"""The README documents the whole command line: every command and every long option that
`--help` shows appears in its Commands section (as sqlite-utils checks its CLI reference)."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from civimc_audit.cli import cli

README = Path(__file__).resolve().parent.parent / "README.md"
SECTION_END = re.compile(r"^## ", re.M)


def commands_section() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## Commands")
    end = SECTION_END.search(text, start + 1)
    return text[start:end.start() if end else len(text)]


def long_options(command: click.Command) -> list[str]:
    with click.Context(command, info_name=command.name) as ctx:
        return [opt for param in command.get_params(ctx) for opt in param.opts + param.secondary_opts
                if opt.startswith("--")]


SHARED = ("--help", "--config")  # every command has them; the section says so once


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_command_and_option_is_in_the_readme(name):
    """Each command has a row in the command table, and each of its long options is in one of
    its rows."""
    section = commands_section()
    rows = "\n".join(re.findall(rf"^\| `{re.escape(name)}\b.*$", section, re.M))
    assert rows, f"`{name}` has no row in the README's command table"
    missing = [opt for opt in long_options(cli.commands[name])
               if opt not in SHARED and not re.search(rf"{re.escape(opt)}\b", rows)]
    assert not missing, f"`{name}`: {missing} not in its README row"


def test_the_shared_and_top_level_options_are_in_the_readme():
    section = commands_section()
    missing = [opt for opt in (*long_options(cli), *SHARED) if opt not in section]
    assert not missing, f"{missing} not in the README's Commands section"


def test_the_check_looks_at_help_as_shown(run_cli):
    """The options come from the same place --help prints them from."""
    code, out, _ = run_cli("approve", "--help")
    assert code == 0
    assert all(opt in out for opt in long_options(cli.commands["approve"]) if opt != "--help")
