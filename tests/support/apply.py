"""Helpers the apply, run and review tests share: the CLI as a user runs it, plans approved
and frozen, what reached Mailchimp, CiviCRM group statuses and journal states."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

from civimc_audit.common.crashpoints import DIE_ENV
from civimc_audit.common.oslock import OSLock
from civimc_audit.config import load_config
from civimc_audit.store import Store
from civimc_audit.store.lock import lock_path
from support.values import TEST_LIST_ID

YEAR = 2026


def cli_ok(run_cli, config, *args, code=0):
    got, out, err = run_cli("--config", config, *args)
    assert got == code, f"{args}: exit {got}\n{out}\n{err}"
    return out


def plan_and_freeze(run_cli, config, *freeze_args, approve=("--all",)):
    for cmd in (["snapshot"], ["reconcile"], ["plan"]):
        cli_ok(run_cli, config, *cmd)
    cli_ok(run_cli, config, "approve", *approve, "--reviewer", "Ada")
    cli_ok(run_cli, config, "approve", "--freeze", "--reviewer", "Ada", *freeze_args)


def posted(emu) -> Counter:
    """(email, status) -> how many batch calls that reached Mailchimp carried it."""
    got = Counter()
    for r in emu.requests:
        if (r.method == "POST" and r.path.rstrip("/") == f"/3.0/lists/{TEST_LIST_ID}"
                and r.fault != "drop"):
            for m in r.body["members"]:
                got[(m["email_address"].lower(), m["status"])] += 1
    return got


def group_status(civi_db, contact_id):
    civi_db.conn.commit()
    with civi_db.conn.cursor() as cur:
        cur.execute("SELECT status FROM civicrm_group_contact WHERE contact_id=%s AND group_id=%s",
                    (contact_id, civi_db.group_id))
        row = cur.fetchone()
        return row and row[0]


def journal_states(config, plan_id=1) -> dict[str, str]:
    from civimc_audit.changes.plan import items_frame

    with Store(load_config(config).store_file) as store:
        items = items_frame(store, plan_id)
    return dict(zip(items["email"], items["journal_state"].fillna(""), strict=True))


def start_apply(config, die_at: str | None) -> subprocess.Popen:
    env = dict(os.environ)
    if die_at:
        env[DIE_ENV] = die_at
    return subprocess.Popen([sys.executable, "-m", "civimc_audit.cli", "--config", str(config),
                             "apply", "--execute", "--no-verify"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def hold_apply_lock(config, plan_id: int, run_id: int) -> OSLock:
    """The store's writer lock, held by this process as an apply of `plan_id` would hold it
    (use as a context manager)."""
    return OSLock(lock_path(load_config(config).store_file), "apply",
                  {"plan": plan_id, "run": run_id})


_HOLD = """
import sys, time
from civimc_audit.common.oslock import OSLock
OSLock(sys.argv[1], "apply", {"plan": int(sys.argv[2]), "run": 1}).acquire()
print("held", flush=True)
time.sleep(120)
"""


def hold_apply_lock_in_child(config, plan_id: int) -> subprocess.Popen:
    """Another process holding the store's writer lock as an apply would (until it is killed)."""
    child = subprocess.Popen([sys.executable, "-c", _HOLD,
                              str(lock_path(load_config(config).store_file)),
                              str(plan_id)], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def changed_at_mailchimp(emu) -> Counter:
    """email -> how many batch calls sent it a change Mailchimp did not refuse (a repeat of a
    change already made counts, even though Mailchimp reports nothing new for it)."""
    got: Counter = Counter()
    for r in emu.requests:
        if r.method == "POST" and r.path.rstrip("/") == f"/3.0/lists/{TEST_LIST_ID}" and r.response:
            refused = {e["email_address"].lower() for e in r.response["errors"]}
            got.update(m["email_address"].lower() for m in r.body["members"]
                       if m["email_address"].lower() not in refused)
    return got
