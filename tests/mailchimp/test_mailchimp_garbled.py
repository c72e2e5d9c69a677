"""Issue 20 point 3, the snapshot's side: member records Mailchimp sends malformed (no id, a null
address, an unknown status, no or an unreadable last_changed) are kept — on the first page, in
the middle of a full pass's pages, where a page overlaps the one before, on the last page, and
when re-read — never dropped and never a failed snapshot. (The emulator's traffic is not checked
against the API spec here: these records break it on purpose.)"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from civimc_audit.config import ENV_MAILCHIMP_API_KEY, MailchimpSettings
from civimc_audit.mailchimp.client import MailchimpClient
from civimc_audit.mailchimp.reader import snapshot_mailchimp
from civimc_audit.store import Store
from civimc_sandbox.emulator import GARBLED_ABSENT, Emulator, EmulatorServer, member_hash

KEY = "0123456789abcdef0123456789abcdef-us3"  # made up
LIST = "badc0ffee0"
N = 2500
GARBLES = {  # position in the listing -> what is sent instead
    0: {"id": GARBLED_ABSENT},
    1: {"email_address": None},
    998: {"status": "frobnicated"},
    999: {"id": GARBLED_ABSENT},  # the overlap between the first two pages
    1000: {"id": GARBLED_ABSENT, "last_changed": "not a date"},
    1500: {"last_changed": GARBLED_ABSENT},
    1998: {"id": GARBLED_ABSENT},
    2499: {"last_changed": None, "status": GARBLED_ABSENT},
}


@pytest.fixture
def mc(tmp_path, monkeypatch):
    emu = Emulator(api_key=KEY)
    emu.add_list(list_id=LIST, name="Garbled")
    when = datetime(2025, 5, 1, tzinfo=UTC).isoformat()
    emu.load_members(LIST, ({"email_address": f"g{i:05d}@example.org", "status": "subscribed",
                             "last_changed": when} for i in range(N)))
    order = [m["email_address"] for m in emu.members(LIST)]
    for pos, garble in GARBLES.items():
        emu.garbled[member_hash(order[pos])] = garble
    monkeypatch.setenv(ENV_MAILCHIMP_API_KEY, KEY)
    with EmulatorServer(emu) as server:
        client = MailchimpClient(MailchimpSettings(list_id=LIST, base_url=server.base_url),
                                 backoff=0.01)
        with Store(tmp_path / "audit.duckdb") as store:
            yield emu, client, store, order
        client.close()


def defects(store: Store, snap_id: int) -> dict:
    return {
        "no_id": store.con.execute("SELECT count(*) FROM mailchimp_member WHERE snapshot_id = ?"
                                   " AND id = ''", [snap_id]).fetchone()[0],
        "no_email": store.con.execute("SELECT count(*) FROM mailchimp_member WHERE"
                                      " snapshot_id = ? AND email_address IS NULL",
                                      [snap_id]).fetchone()[0],
        "no_date": store.con.execute("SELECT count(*) FROM mailchimp_member WHERE"
                                     " snapshot_id = ? AND last_changed IS NULL",
                                     [snap_id]).fetchone()[0],
        "odd_status": store.con.execute(
            "SELECT count(*) FROM mailchimp_member WHERE snapshot_id = ? AND"
            " (status IS NULL OR status = 'frobnicated')", [snap_id]).fetchone()[0],
    }


def test_a_full_pass_keeps_every_garbled_member(mc):
    emu, client, store, _ = mc
    snap = snapshot_mailchimp(client.settings, store, client=client)
    assert snap.status == "complete", snap.message
    n = store.con.execute("SELECT count(*) FROM mailchimp_member WHERE snapshot_id = ?",
                          [snap.id]).fetchone()[0]
    assert n == N
    assert defects(store, snap.id) == {"no_id": 4, "no_email": 1, "no_date": 3, "odd_status": 2}


def test_garbled_members_re_read_during_a_snapshot_are_kept(mc):
    """Members changed while the snapshot runs are read again (since_last_changed): a garbled
    one among them replaces its first copy, and none is lost or doubled."""
    emu, client, store, order = mc
    fired = []

    def change(e, list_id, offset):
        if offset and not fired:
            fired.append(offset)
            for pos in (0, 1500, 2499):  # garbled ones, re-read later with their garbles
                e.update_member(list_id, order[pos], merge_fields={"FNAME": "Changed"})

    emu.on_members_page = change
    snap = snapshot_mailchimp(client.settings, store, client=client)
    assert fired and snap.status == "complete", snap.message
    n = store.con.execute("SELECT count(*) FROM mailchimp_member WHERE snapshot_id = ?",
                          [snap.id]).fetchone()[0]
    assert n == N
    assert defects(store, snap.id)["no_id"] == 4
