"""Issue 15 point 4: where the config is found when no path is given — the same lookup for the
CLI and the notebooks ($CIVIMC_CONFIG, then the working directory, then the project root) — and
a missing file reported in the words of whoever asked (a flag for the CLI, the notebook's cell
for a notebook)."""

from __future__ import annotations

import pytest

from civimc_audit.config import (
    CONFIG_ENV,
    NOTEBOOK_CONFIG_HINT,
    find_config_path,
    load_config,
    project_config,
)
from civimc_audit.errors import ConfigError
from civimc_audit.report.review_widget import ReviewTable

CONFIG = '[civicrm]\ngroup_id = 1\n[mailchimp]\nlist_id = "x"\n'


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder (with pyproject.toml and the config) and its notebooks/ subfolder,
    CIVIMC_CONFIG unset."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "civimc-audit.toml").write_text(CONFIG)
    (tmp_path / "notebooks").mkdir()
    return tmp_path


def test_a_notebook_in_the_project_finds_the_project_root_config(project, monkeypatch):
    monkeypatch.chdir(project / "notebooks")
    assert find_config_path() == project / "civimc-audit.toml"
    assert load_config().source == (project / "civimc-audit.toml").resolve()


def test_the_working_directory_comes_before_the_project_root(project, monkeypatch):
    here = project / "notebooks" / "civimc-audit.toml"
    here.write_text(CONFIG)
    monkeypatch.chdir(project / "notebooks")
    assert find_config_path() == here


def test_civimc_config_comes_first(project, monkeypatch, tmp_path_factory):
    other = tmp_path_factory.mktemp("elsewhere") / "mine.toml"
    other.write_text(CONFIG)
    monkeypatch.setenv(CONFIG_ENV, str(other))
    monkeypatch.chdir(project / "notebooks")
    assert find_config_path() == other


def test_the_search_stops_at_the_project_root(project, monkeypatch):
    (project / "civimc-audit.toml").unlink()
    (project.parent / "civimc-audit.toml").write_text(CONFIG)  # above the project: not used
    try:
        assert project_config(project / "notebooks") is None
    finally:
        (project.parent / "civimc-audit.toml").unlink()


def test_a_wrong_path_is_said_in_the_callers_words(project, monkeypatch):
    with pytest.raises(ConfigError) as cli:
        load_config(project / "nope.toml")
    assert "--config PATH" in str(cli.value)
    with pytest.raises(ConfigError) as notebook:
        ReviewTable(str(project / "nope.toml"))
    text = str(notebook.value)
    assert text.startswith(f"config file not found: {project / 'nope.toml'}")
    assert NOTEBOOK_CONFIG_HINT in text and "--" not in text
