"""What exactly-once costs: `apply --execute` of N approved items against the writers alone.

Both runs use the same people on a fresh CiviCRM database and emulator: half are subscribed at
Mailchimp (add_to_mailchimp), half are added to the CiviCRM group (add_to_civicrm_group). The
baseline calls MailchimpWriter.batch_update and CiviCRMWriter.add_to_group directly, in the same
chunk sizes; the measured run is the real apply (drift check, backup, journal before and after
every chunk, lock), without the final verify. Prints the ratio.

    .venv/bin/python -m bench.apply_overhead [N]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from civimc_audit.cli import main as cli
from civimc_audit.config import (
    ENV_CIVICRM_PASSWORD,
    ENV_CIVICRM_WRITE_PASSWORD,
    ENV_MAILCHIMP_API_KEY,
    load_config,
)
from civimc_sandbox.civicrm.fixture import CiviFixture, create_database
from civimc_sandbox.demo import jan
from civimc_sandbox.emulator import Emulator, EmulatorServer
from civimc_sandbox.localdb import ensure_server

KEY = "0123456789abcdef0123456789abcdef-us1"  # fake key for the emulator
LIST = "b3nchb3nch"


def setup(server, n: int, folder: Path):
    name = f"civimc_bench_{uuid.uuid4().hex[:8]}"
    conn = server.connect(autocommit=False)
    create_database(conn, name)
    f = CiviFixture(conn)
    group = f.group("newsletter")
    emu = Emulator(api_key=KEY)
    emu.add_list(list_id=LIST)
    members = []
    for i in range(n):
        cid = f.contact("P", f"{i}", email=f"p{i}@example.org")
        if i % 2 == 0:
            f.add_to_group(cid, group, jan(2, 2026))       # R6: add to Mailchimp
        else:
            members.append({"email_address": f"p{i}@example.org", "status": "subscribed",
                            "last_changed": "2026-01-03T00:00:00+00:00"})  # R3: add to group
    f.commit()
    emu.load_members(LIST, members)
    http = EmulatorServer(emu).start()
    config = folder / "civimc-audit.toml"
    config.write_text(f"""
[civicrm]
host = "{server.host}"
port = {server.port}
database = "{name}"
user = "{server.user}"
write_user = "{server.user}"
group_id = {group}
[mailchimp]
list_id = "{LIST}"
base_url = "{http.base_url}"
[store]
path = "audit.duckdb"
runs_dir = "runs"
""")
    return conn, name, http, config


def run(n: int) -> dict:
    server = ensure_server()
    os.environ[ENV_CIVICRM_PASSWORD] = server.password
    os.environ[ENV_CIVICRM_WRITE_PASSWORD] = server.password
    os.environ[ENV_MAILCHIMP_API_KEY] = KEY
    times = {}
    for mode in ("baseline", "apply"):
        with tempfile.TemporaryDirectory() as tmp:
            conn, name, http, config = setup(server, n, Path(tmp))
            try:
                for cmd in (["snapshot"], ["reconcile"], ["plan"],
                            ["approve", "--all", "--reviewer", "bench"],
                            ["approve", "--freeze", "--reviewer", "bench"]):
                    assert cli(["--config", str(config), *cmd]) == 0
                times[mode] = measure(mode, config)
            finally:
                http.stop()
                with conn.cursor() as cur:
                    cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
                conn.close()
    return times


def measure(mode: str, config: Path) -> float:
    import json

    from civimc_audit.changes.apply import MAILCHIMP_CHUNK
    from civimc_audit.changes.plan import items_frame
    from civimc_audit.changes.session import CIVICRM_BATCH
    from civimc_audit.civicrm.writer import CiviCRMWriter
    from civimc_audit.mailchimp.client import MailchimpClient
    from civimc_audit.mailchimp.writer import MailchimpWriter
    from civimc_audit.store import Store

    cfg = load_config(config)
    if mode == "apply":
        start = time.perf_counter()
        assert cli(["--config", str(config), "apply", "--execute", "--no-verify"]) == 0
        return time.perf_counter() - start
    with Store(cfg.store_file) as store:
        items = items_frame(store, 1)
    mc = [json.loads(p) for p in items[items["target"] == "mailchimp"]["payload"]]
    ids = [int(c) for c in items[items["target"] == "civicrm"]["contact_id"]]
    start = time.perf_counter()
    client = MailchimpClient(cfg.mailchimp)
    w = MailchimpWriter(client, cfg.mailchimp.list_id)
    for i in range(0, len(mc), MAILCHIMP_CHUNK):
        w.batch_update(mc[i:i + MAILCHIMP_CHUNK])
    with CiviCRMWriter(cfg.civicrm, batch_size=CIVICRM_BATCH) as cw:
        for i in range(0, len(ids), CIVICRM_BATCH):
            cw.add_to_group(cfg.civicrm.group_id, ids[i:i + CIVICRM_BATCH], "bench")
    client.close()
    return time.perf_counter() - start


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    t = run(n)
    print(f"apply of {n} items: writers alone {t['baseline']:.2f}s, apply --execute "
          f"{t['apply']:.2f}s, ratio {t['apply'] / t['baseline']:.2f}x")
