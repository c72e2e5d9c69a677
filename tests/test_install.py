"""A real install: the wheel built from this tree, installed with pip into a fresh virtualenv (no
`-e`, no source tree beside it), runs an audit with its report from a folder outside the
source tree; and the wheel carries the notebooks and SQL but no test-only data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from support.values import TEST_LIST_ID

from civimc_sandbox.demo import load_seed

ROOT = Path(__file__).resolve().parents[1]
YEAR = 2026


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a clean copy: setuptools leaves build/ in the tree it builds, and a stale
    # build/lib would slip deleted modules into later wheels.
    source = tmp_path_factory.mktemp("source") / "civimc-audit"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "data", "build", "*.egg-info", "__pycache__", ".*_cache"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "-w", str(out), str(source)],
                   check=True, capture_output=True, text=True)
    (found,) = out.glob("civimc_audit-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel (and its dependencies, from the package index or
    pip's cache) installed; returns its bin folder."""
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bin_dir = env_dir / "bin"
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
                   check=True, capture_output=True, text=True)
    return bin_dir


def test_the_wheel_ships_the_notebooks_and_sql_and_no_test_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for notebook in ("audit", "review", "apply", "run"):
        assert f"civimc_audit/notebooks/{notebook}.ipynb" in names
    assert any(n.startswith("civimc_audit/reconcile/sql/") and n.endswith(".sql") for n in names)
    assert "civimc_sandbox/civicrm/schema.sql" in names
    assert not [n for n in names if n.startswith("tests/") or "swagger" in n], names
    assert sum(zipfile.ZipFile(wheel).getinfo(n).file_size for n in names) < 2_000_000


def test_an_installed_wheel_audits_and_reports_from_outside_the_tree(
        installed, civi_db, emulator, make_config, tmp_path):
    load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)
    config = make_config()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{installed}{os.pathsep}{env.get('PATH', '')}"

    def cli(*args):
        done = subprocess.run([str(installed / "civimc-audit"), "--config", str(config), *args],
                              cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"{args}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    where = subprocess.run([str(installed / "python"), "-c",
                            "import civimc_audit; print(civimc_audit.__file__)"],
                           cwd=elsewhere, env=env, capture_output=True, text=True, check=True)
    assert not where.stdout.strip().startswith(str(ROOT)), where.stdout

    cli("snapshot")
    cli("reconcile")
    out = cli("report")
    html = Path(out.strip().splitlines()[-1].removeprefix("report: "))
    folder = html.parent
    assert html.stat().st_size > 10_000 and "Wilma" in html.read_text()
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert summary["outcomes"]["remove_from_civicrm_group"] == 1
    run = cli("run")
    assert "run " in run and ": ok:" in run
