"""`civimc-audit emulator` serves a working API in the foreground, seeded from a JSON file."""

from __future__ import annotations

import json
import subprocess
import sys

import requests

KEY = "00112233445566778899aabbccddeeff-us3"  # a made-up key


def test_emulator_command_serves_members_from_a_file(tmp_path):
    members = [{"email_address": f"p{i}@example.org", "status": "subscribed",
                "last_changed": "2026-01-02T03:04:05+00:00", "merge_fields": {"FNAME": f"P{i}"}}
               for i in range(25)]
    path = tmp_path / "members.json"
    path.write_text(json.dumps(members))
    proc = subprocess.Popen(
        [sys.executable, "-m", "civimc_audit.cli", "emulator", "--port", "0", "--list-id",
         "abc123", "--api-key", KEY, "--members", str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        base = line.strip().split(" at ")[-1]
        assert base.startswith("http://127.0.0.1:") and base.endswith("/3.0")
        banner = "".join(proc.stdout.readline() for _ in range(4))
        assert "25 members from" in banner
        assert f"API key it accepts (a made-up local key): {KEY}" in banner
        assert f'base_url = "{base}"' in banner
        auth = ("any", KEY)
        assert requests.get(f"{base}/ping", auth=auth, timeout=5).json() == {
            "health_status": "Everything's Chimpy!"}
        page = requests.get(f"{base}/lists/abc123/members", auth=auth, timeout=5,
                            params={"count": 10, "offset": 20}).json()
        assert page["total_items"] == 25 and len(page["members"]) == 5
        assert page["members"][0]["last_changed"] == "2026-01-02T03:04:05+00:00"
        bad = requests.get(f"{base}/ping", auth=("any", "0" * 32 + "-us3"), timeout=5)
        assert bad.status_code == 401 and bad.json()["title"] == "API Key Invalid"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_broken_members_file_is_one_line_and_exit_2(tmp_path):
    path = tmp_path / "members.json"
    path.write_text('[{"email_address": "a@example.org"}')
    done = subprocess.run([sys.executable, "-m", "civimc_audit.cli", "emulator", "--port", "0",
                           "--members", str(path)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.startswith(f"emulator: cannot load {path}: JSONDecodeError")
    assert len(done.stderr.strip().splitlines()) == 1
