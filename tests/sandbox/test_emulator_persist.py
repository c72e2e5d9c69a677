"""The emulator's state file: what a restarted emulator must still know."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
import requests

from civimc_sandbox.emulator import Emulator
from civimc_sandbox.emulator.persist import Autosave, load_state, save_state

KEY = "00112233445566778899aabbccddeeff-us3"  # a made-up key
LIST = "abc123"


def populated() -> Emulator:
    emu = Emulator(api_key=KEY)
    emu.add_list(list_id=LIST, name="Bedrock", merge_fields=["FNAME", "LNAME", "TOWN"])
    emu.add_member(LIST, "wilma@example.org", merge_fields={"FNAME": "Wilma"},
                   last_changed="2026-01-01T10:00:00+00:00", tags=["vip"],
                   interests={"abc": True}, timestamp_opt="2025-12-01T00:00:00Z")
    emu.add_member(LIST, "barney@example.org", status="unsubscribed",
                   unsubscribe_reason="N/A (Unsubscribed by admin)")
    emu.add_member(LIST, "fred@example.org", status="archived")
    emu.add_member(LIST, "gone@example.org")
    emu.delete_member(LIST, "gone@example.org", permanent=True)
    emu.add_member(LIST, "betty.old@example.org")
    emu.update_member(LIST, "betty.old@example.org", email_address="betty@example.org")
    # A write through the API, with its side effects (last_sub_date).
    assert emu.dispatch("POST", f"/lists/{LIST}/members",
                        body={"email_address": "pebbles@example.org",
                              "status": "subscribed"}).status == 200
    return emu


def test_a_saved_state_loads_back_member_for_member(tmp_path):
    emu = populated()
    path = tmp_path / "state.json"
    save_state(emu, path)
    again = Emulator(api_key=KEY)
    assert load_state(again, path) == 5
    assert again.members(LIST) == emu.members(LIST)
    assert again.list_info(LIST) == emu.list_info(LIST)
    assert again.is_forgotten(LIST, "gone@example.org")
    # The moved member is still found by the contact id it was created with.
    old_contact = emu.get_member(LIST, "betty@example.org")["contact_id"]
    assert again.get_member(LIST, old_contact)["email_address"] == "betty@example.org"
    # New members continue the insertion order instead of reusing a sequence number.
    again.add_member(LIST, "dino@example.org")
    assert [m["email_address"] for m in again.members(LIST)][-1] == "dino@example.org"
    with pytest.raises(ValueError, match="already in the emulator"):
        load_state(again, path)


def test_autosave_writes_after_a_change_and_on_stop(tmp_path):
    emu = populated()
    path = tmp_path / "state.json"
    autosave = Autosave(emu, path, interval=0.05).start()
    try:
        first = path.read_bytes()
        emu.update_member(LIST, "wilma@example.org", status="unsubscribed")
        deadline = time.monotonic() + 5
        while path.read_bytes() == first and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.read_bytes() != first
    finally:
        autosave.stop()
    emu.add_member(LIST, "late@example.org")
    assert json.loads(path.read_bytes())["lists"][0]["members"][-1][0] != "late@example.org"
    Autosave(emu, path).stop()  # a stop saves what changed
    assert json.loads(path.read_bytes())["lists"][0]["members"][-1][0] == "late@example.org"


def serve(state, *extra) -> tuple[subprocess.Popen, str, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "civimc_sandbox.emulator", "--list-id", LIST, "--api-key", KEY,
         "--state", str(state), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    second = proc.stdout.readline()
    return proc, first.strip().split(" at ")[-1], second


def test_a_restarted_emulator_keeps_what_a_client_wrote(tmp_path):
    state = tmp_path / "state.json"
    members = tmp_path / "members.json"
    members.write_text(json.dumps([{"email_address": "ada@example.org", "status": "subscribed",
                                    "last_changed": "2026-01-02T03:04:05+00:00"}]))
    proc, base, origin = serve(state, "--members", str(members))
    try:
        assert "1 members from" in origin
        r = requests.post(f"{base}/lists/{LIST}/members", auth=("x", KEY), timeout=5,
                          json={"email_address": "grace@example.org", "status": "subscribed"})
        assert r.status_code == 200, r.text
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    proc, base, origin = serve(state, "--members", str(members))
    try:
        assert "2 members resumed from" in origin
        page = requests.get(f"{base}/lists/{LIST}/members", auth=("x", KEY), timeout=5).json()
        assert sorted(m["email_address"] for m in page["members"]) == [
            "ada@example.org", "grace@example.org"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
