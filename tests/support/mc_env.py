"""Shared set-up of the Mailchimp tests: an emulator over HTTP whose whole recorded traffic is
checked against the API spec when the test ends, clients pointed at it, and a fresh store."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from civimc_audit.config import ENV_MAILCHIMP_API_KEY, MailchimpSettings
from civimc_audit.mailchimp.client import MailchimpClient
from civimc_audit.store import Store
from civimc_sandbox.emulator import Emulator, EmulatorServer
from support.spec import assert_traffic_matches_spec

KEY = "5f0e1d2c3b4a59687766554433221100-us7"  # made up
LIST = "c0ffee1234"
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "archived", "transactional")
OLD = "2025-03-04T05:06:07+00:00"


@dataclass
class MC:
    emu: Emulator
    server: EmulatorServer
    tmp: Path
    spec_items: int = 0  # members checked per collection response (0 = every one)
    clients: list = field(default_factory=list)
    stores: list = field(default_factory=list)

    def settings(self, **kw) -> MailchimpSettings:
        kw.setdefault("list_id", LIST)
        kw.setdefault("base_url", self.server.base_url)
        return MailchimpSettings(**kw)

    def client(self, backoff: float = 0.01, **kw) -> MailchimpClient:
        timeout = kw.pop("timeout", None)
        c = MailchimpClient(self.settings(**kw), backoff=backoff, timeout=timeout)
        self.clients.append(c)
        return c

    def store(self, name: str = "audit.duckdb") -> Store:
        s = Store(self.tmp / name)
        self.stores.append(s)
        return s

    def load(self, n: int, *, prefix: str = "m", last_changed: str = OLD) -> None:
        self.emu.load_members(LIST, ({
            "email_address": f"{prefix}{i}@example.org", "status": STATUSES[i % len(STATUSES)],
            "last_changed": last_changed,
            "merge_fields": {"FNAME": f"F{i}", "LNAME": f"L{i}"} if i % 7 else {}}
            for i in range(n)))

    def member_requests(self):
        return [r for r in self.emu.requests
                if r.method == "GET" and r.path == f"/3.0/lists/{LIST}/members"]


def mc_env(tmp_path, monkeypatch):
    """Generator behind each test module's ``mc`` fixture."""
    emu = Emulator(api_key=KEY)
    emu.add_list(list_id=LIST, name="Supporters")
    monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, KEY)
    with EmulatorServer(emu) as server:
        env = MC(emu, server, tmp_path)
        yield env
        for c in env.clients:
            c.close()
        for s in env.stores:
            s.close()
    assert_traffic_matches_spec(emu, env.spec_items)


def emulator_state(emu: Emulator) -> dict:
    """id -> (email, status, last_changed naive UTC, FNAME) as the emulator holds it now."""
    out = {}
    for m in emu.members(LIST):
        lc = datetime.fromisoformat(m["last_changed"]).astimezone(UTC).replace(tzinfo=None)
        out[m["id"]] = (m["email_address"], m["status"], lc, m["merge_fields"].get("FNAME") or None)
    return out


def snapshot_state(store: Store, snapshot_id: int) -> dict:
    rows = store.con.execute(
        "SELECT id, email_address, status, last_changed, NULLIF(merge_fields->>'$.FNAME', '')"
        " FROM mailchimp_member"
        " WHERE snapshot_id = ?", [snapshot_id]).fetchall()
    assert len(rows) == len({r[0] for r in rows}), "duplicate member ids in a snapshot"
    return {r[0]: tuple(r[1:]) for r in rows}
