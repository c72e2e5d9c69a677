"""`make demo` leaves a sandbox that works as it says: the printed commands, run verbatim, the
emulator keeping its audience across a restart, and the printed stop command stopping it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from civimc_sandbox.demo import DEMO_API_KEY, DEMO_LIST_ID, SEED, Demo, DemoNames
from civimc_sandbox.emulator import member_hash
from civimc_sandbox.seed import seed_email

pytestmark = pytest.mark.slow


def sh(line: str, cwd: Path, env_sh: str | None = None) -> subprocess.CompletedProcess:
    """A printed line run as a person would: in bash, after sourcing env.sh when given."""
    script = f"source {env_sh} && {line}" if env_sh else line
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIVIMC_") or
           k == "CIVIMC_TEST_MYSQL"}
    env["PATH"] = "/usr/bin:/bin"  # only env.sh puts the toolkit on PATH
    return subprocess.run(["bash", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def printed_workflow(out: str) -> tuple[str, list[str]]:
    """The `source …` line and the commands after it, exactly as the demo printed them."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("  source "))
    commands = []
    for line in lines[start + 1:]:
        if not line.startswith("  civimc-audit "):
            break
        commands.append(line.strip())
    return lines[start].strip().removeprefix("source "), commands


def printed_stop(out: str) -> str:
    line = next(line for line in out.splitlines() if line.startswith("Stop the sandbox with"))
    return line.split("`")[1]


def member(base_url: str, email: str) -> dict:
    r = requests.get(f"{base_url}/lists/{DEMO_LIST_ID}/members/{member_hash(email)}",
                     auth=("demo", DEMO_API_KEY), timeout=10)
    return r.json()


def test_the_demo_sandbox_works_as_printed_and_stays_up(tmp_path, mysql_server, monkeypatch):
    folder = tmp_path / "demo"
    demo = Demo(folder)
    assert len(demo.names.reader) <= 32 and demo.names.database != "civimc_demo"
    assert DemoNames.for_folder(tmp_path / "other").database != demo.names.database
    # The demo uses the tests' server, wherever that is.
    monkeypatch.setenv("CIVIMC_TEST_MYSQL", f"{mysql_server.host}:{mysql_server.port}:"
                                            f"{mysql_server.user}:{mysql_server.password}")
    try:
        run = [sys.executable, "-m", "civimc_sandbox.demo", "demo"]
        done = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        out = done.stdout
        assert done.stderr == ""
        assert "Resetting" not in out  # nothing to reset the first time
        # The five, the counts and the report; not a 313-row table.
        assert len(out.splitlines()) < 50, out
        for person in SEED:
            row = next(line for line in out.splitlines() if line.startswith(person.first + " "))
            assert row.rstrip().endswith(person.expected), row
        assert "All 313 people" in out and "would be added to Mailchimp" in out
        # Two mapped interests with people in every interest rule.
        interests = sh("civimc-audit outcomes --interests --format json", tmp_path,
                       printed_workflow(out)[0])
        assert interests.returncode == 0, interests.stderr
        rules = {r["rule"] for r in json.loads(interests.stdout)}
        assert rules == {"I1", "I2", "I3", "I4", "I5", "I6"}, rules
        assert len({r["interest_id"] for r in json.loads(interests.stdout)}) == 2
        report = next(line for line in out.splitlines() if line.startswith("The audit report"))
        assert (tmp_path / report.split(": ")[1]).is_file()

        env_sh, commands = printed_workflow(out)
        assert (tmp_path / env_sh).stat().st_mode & 0o777 == 0o600
        assert "password" not in demo.config_path.read_text().lower().replace(
            "passwords and the api key are in env.sh", "")
        assert [c.split("#")[0].split()[1] for c in commands] == [
            "plan", "review", "approve", "approve", "apply", "apply", "verify", "run"]
        pid = demo.emulator.pid()
        assert pid is not None
        for command in commands:
            result = sh(command, tmp_path, env_sh)
            assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
        assert (folder / "review.csv").is_file()
        base_url = demo.emulator.base_url(json.loads(demo.emulator.info_path.read_text())["port"])
        betty = member(base_url, seed_email("Betty"))
        assert betty["status"] == "subscribed"  # apply added her

        # Stopped with the printed command, started again: the emulator still has what apply
        # wrote, so verify still finds both sides agreeing.
        stop = printed_stop(out)
        result = sh(stop, tmp_path, env_sh)
        assert result.returncode == 0 and f"pid {pid}" in result.stdout, result.stdout
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        assert demo.emulator.pid() is None
        with pytest.raises(requests.ConnectionError):
            member(base_url, seed_email("Betty"))
        result = sh(stop.replace("--stop", "--start"), tmp_path, env_sh)
        assert result.returncode == 0, result.stdout + result.stderr
        assert member(base_url, seed_email("Betty"))["status"] == "subscribed"
        result = sh("civimc-audit verify", tmp_path, env_sh)
        assert result.returncode == 0 and "agree on both sides" in result.stdout, result.stdout

        # Running the demo again says what it resets, and starts over.
        again = subprocess.run(run, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stdout + again.stderr
        first = again.stdout.splitlines()[0]
        assert first.startswith("Resetting the demo in demo: stopped its emulator")
        assert demo.names.database in first and "audit store" in first
        pid = demo.emulator.pid()
        assert "Betty" in again.stdout and "gets added to Mailchimp" in again.stdout

        result = sh(stop.replace("--stop", "--drop"), tmp_path, env_sh)
        assert result.returncode == 0 and "dropped database" in result.stdout, result.stdout
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        conn = mysql_server.connect()
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM mysql.user WHERE User LIKE %s",
                        (f"civimc_demo_{demo.names.suffix}%",))
            assert cur.fetchone()[0] == 0
            cur.execute("SELECT COUNT(*) FROM information_schema.SCHEMATA "
                        "WHERE SCHEMA_NAME = %s", (demo.names.database,))
            assert cur.fetchone()[0] == 0
        conn.close()
    finally:
        demo.emulator.stop()
        demo.drop(mysql_server)
