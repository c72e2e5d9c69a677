"""The date-evidence step: activity-feed reads for the contested rows, against the emulator's raw
throughput for the same requests, measured in the same run.

    python -m bench evidence [--people N] [--feeds K] [--rounds R] [--connections C]
                             [--latency S]

1. The emulator (its own process) holds N members; the first K have an activity feed (a signup,
   an open, an unsubscribe) and are the contested rows: in CiviCRM they were added to the group
   before Mailchimp's last change, so the rules remove them (R2) and need their feeds. The other
   N - K agree on both sides (R1) and must cost no request.
2. The audit store holds the two snapshots of the same N people, written straight into DuckDB
   (this measures the evidence step, not the snapshots).
3. Alternating rounds of
   - raw: the same K feed requests (path, `activity_filters`, `count`, `fields`) as plain
     concurrent GETs,
     C threads each with its own keep-alive `requests` session, bodies read and dropped;
   - evidence: `gather_evidence` (the SQL that chooses the rows among N people, the K feed
     reads through the client, max_connections = C, and the store insert).
   Reported: feed requests per second of both, and their ratio for the feed reads alone and for
   the whole step (target: the feed reads at ≥ 0.8 of raw; below it the bench exits 1). These
   rounds read every feed directly, whatever K (the direct path is what is measured).
4. Once K is above activity.BATCH_THRESHOLD: the step as it runs, the feeds read through
   /batches (the emulator runs the operations and packs the archive, as Mailchimp would);
   reported: its seconds and requests, and its ratio to the direct step of the same run.
   `--latency S` makes the emulator wait S seconds before each answer (the real API's round
   trip); 0 (the default) is loopback speed, the hardest case for the client's own overhead.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

import requests

KEY = "0badc0de0badc0de0badc0de0badc0de-us5"  # fake key, made up
LIST = "e71de0ce01"
GROUP = 7
TARGET = 0.8


def _email(i: int) -> str:
    return f"person{i}@example.org"


def _members(n: int, k: int):
    for i in range(n):
        m = {"email_address": _email(i), "status": "unsubscribed" if i < k else "subscribed",
             "last_changed": "2026-01-05T12:00:00+00:00"}
        if i < k:
            m["activity"] = [
                {"activity_type": "generic_signup", "created_at_timestamp": "2025-06-01T10:00:00Z"},
                {"activity_type": "open", "created_at_timestamp": "2025-12-01T10:00:00Z",
                 "campaign_id": "c1"},
                {"activity_type": "unsub", "created_at_timestamp":
                    f"2026-01-0{2 if i % 2 else 4}T10:00:00Z"}]
        yield m


def _serve(n: int, k: int, conn, latency: float = 0.0) -> None:
    """Child process: the emulator holding `n` members (answering after `latency` s)."""
    from civimc_sandbox.emulator import Emulator, EmulatorServer

    emu = Emulator(api_key=KEY)
    emu.record_requests = False
    emu.max_connections = 10
    if latency > 0:
        emu.faults.configure(rate_slow=1.0, slow_seconds=latency)
    emu.add_list(list_id=LIST, name="Benchmark audience")
    t = time.perf_counter()
    emu.load_members(LIST, _members(n, k))
    load = time.perf_counter() - t
    server = EmulatorServer(emu).start()
    conn.send((server.base_url, load))
    conn.recv()  # until told to stop
    server.stop()


def write_snapshots(store, n: int, k: int) -> tuple[int, int]:
    """Both snapshots of the same n people: contacts in the group since 3 Jan 2026; the first k
    unsubscribed at Mailchimp (last changed 5 Jan: R2), the rest subscribed (R1)."""
    con = store.con
    civi = store.begin_snapshot("civicrm", {"group_id": GROUP, "group_title": "Bench"})
    mc = store.begin_snapshot("mailchimp", {"list_id": LIST, "list_name": "Bench"})
    with store.transaction():
        con.execute(f"INSERT INTO civicrm_group VALUES ({civi}, {GROUP}, 'bench', 'Bench',"
                    " 'Mailing List', NULL, true, false)")
        con.execute(f"INSERT INTO civicrm_contact SELECT {civi}, i + 1, 'Individual', 'P',"
                    " 'Erson' || i, 'Person ' || i, false, false, false, false FROM range(?) t(i)",
                    [n])
        con.execute(f"INSERT INTO civicrm_email SELECT {civi}, i + 1, i + 1,"
                    " 'person' || i || '@example.org', true, false, 0, 1 FROM range(?) t(i)", [n])
        con.execute(f"INSERT INTO civicrm_group_contact SELECT {civi}, i + 1, {GROUP}, i + 1,"
                    " 'Added' FROM range(?) t(i)", [n])
        con.execute(f"INSERT INTO civicrm_subscription_history SELECT {civi}, i + 1, i + 1,"
                    f" {GROUP}, TIMESTAMP '2026-01-03 12:00:00', 'Admin', 'Added'"
                    " FROM range(?) t(i)", [n])
        con.execute(f"INSERT INTO mailchimp_list VALUES ({mc}, '{LIST}', 'Bench', ?, ?)", [n, n])
        con.execute("INSERT INTO mailchimp_member (snapshot_id, id, email_address, status,"
                    " last_changed, merge_fields, contact_id)"
                    f" SELECT {mc}, md5(e), e,"
                    " CASE WHEN i < ? THEN 'unsubscribed' ELSE 'subscribed' END,"
                    " TIMESTAMP '2026-01-05 12:00:00', '{{}}', NULL"
                    " FROM (SELECT i, 'person' || i || '@example.org' AS e FROM range(?) t(i))",
                    [k, n])
    store.finish_snapshot(civi)
    store.finish_snapshot(mc)
    return civi, mc


def raw_reads(base_url: str, paths: list[str], connections: int) -> float:
    """The baseline: the same GETs from `connections` threads, bodies read and dropped."""
    from civimc_audit.mailchimp.activity import FEED_PARAMS

    todo = iter(paths)
    lock = threading.Lock()
    params = FEED_PARAMS
    failures = []

    def worker() -> None:
        with requests.Session() as s:
            s.auth = ("bench", KEY)
            while True:
                with lock:
                    path = next(todo, None)
                if path is None:
                    return
                r = s.get(base_url + path, params=params, timeout=60)
                if r.status_code != 200:
                    failures.append(r.status_code)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    took = time.perf_counter() - t
    assert not failures, failures[:5]
    return took


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench evidence")
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--feeds", type=int, default=10_000, help="contested rows (feed reads)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=5, help="max_connections (default: the "
                    "config's default)")
    ap.add_argument("--latency", type=float, default=0.0,
                    help="seconds the emulator waits before each answer (default 0: loopback)")
    args = ap.parse_args(argv)
    from civimc_audit.config import ENV_MAILCHIMP_API_KEY, MailchimpSettings, config_from_dict
    from civimc_audit.mailchimp.activity import BATCH_THRESHOLD
    from civimc_audit.mailchimp.client import MailchimpClient, member_hash
    from civimc_audit.runs.evidence import take_evidence
    from civimc_audit.store import Store

    os.environ[ENV_MAILCHIMP_API_KEY] = KEY  # the local emulator's made-up key
    n, k, c = args.people, args.feeds, args.connections
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start",
          flush=True)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(n, k, child, args.latency), daemon=True)
    proc.start()
    base_url, load = parent.recv()
    print(f"emulator: loaded {n:,} members ({k:,} with activity feeds) in {load:.1f} s",
          flush=True)
    paths = [f"/lists/{LIST}/members/{member_hash(_email(i))}/activity-feed" for i in range(k)]
    raw_t, step_t, read_t = [], [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            config = config_from_dict({
                "civicrm": {"database": "unused", "user": "unused", "group_id": GROUP},
                "mailchimp": {"list_id": LIST, "base_url": base_url, "max_connections": c},
                "store": {"path": str(Path(tmp) / "bench.duckdb")}}, Path(tmp))
            with Store(config.store_file) as store:
                t = time.perf_counter()
                civi, mc = write_snapshots(store, n, k)
                print(f"store: both snapshots of {n:,} people written in "
                      f"{time.perf_counter() - t:.1f} s", flush=True)
                raw_reads(base_url, paths[: min(k, 500)], c)  # warm-up, untimed
                for r in range(args.rounds):
                    raw_t.append(raw_reads(base_url, paths, c))
                    client = MailchimpClient(MailchimpSettings(
                        list_id=LIST, base_url=base_url, max_connections=c))
                    with client:
                        t = time.perf_counter()
                        found = take_evidence(config, store, civi, mc, client=client,
                                              batch_threshold=k)
                        step_t.append(time.perf_counter() - t)
                    read_t.append(found.seconds)
                    assert (found.members, found.requests, found.unreadable) == (k, k, 0), found
                    print(f"round {r + 1}: raw {k / raw_t[-1]:,.0f} requests/s; evidence reads "
                          f"{k / read_t[-1]:,.0f} requests/s, whole step {k / step_t[-1]:,.0f}"
                          f" requests/s ({step_t[-1] - read_t[-1]:.1f} s choosing rows and "
                          f"storing); load average {os.getloadavg()[0]:.2f}", flush=True)
                batch = None
                if k > BATCH_THRESHOLD:
                    client = MailchimpClient(MailchimpSettings(
                        list_id=LIST, base_url=base_url, max_connections=c))
                    with client:
                        t = time.perf_counter()
                        found = take_evidence(config, store, civi, mc, client=client)
                        batch = (time.perf_counter() - t, found.requests)
                    assert (found.members, found.unreadable) == (k, 0), found
                flagged = store.con.execute(
                    "SELECT count(*) FILTER (WHERE status_changed <= TIMESTAMP '2026-01-03 12:00')"
                    " FROM mailchimp_evidence WHERE mailchimp_snapshot_id = ?", [mc]).fetchone()[0]
    finally:
        parent.send("stop")
        proc.join(timeout=30)
    raw, reads, step = (statistics.median(x) for x in (raw_t, read_t, step_t))
    ratio, whole = raw / reads, raw / step
    print(f"raw (plain concurrent GETs, {c} connections): {k / raw:,.0f} feed requests/s")
    print(f"evidence feed reads (client: retries, parsing; {c} connections): "
          f"{k / reads:,.0f} feed requests/s")
    print(f"ratio evidence reads/raw: {ratio:.3f} (target >= {TARGET}"
          f"{'' if ratio >= TARGET else ', missed'})")
    print(f"whole evidence step (choosing {k:,} rows among {n:,} people in SQL + reads + "
          f"store): {k / step:,.0f} feed requests/s, ratio to raw {whole:.3f} (no target)")
    print(f"requests: {k:,} feeds for {k:,} contested rows, none for the other {n - k:,}; "
          f"{flagged:,} rows decided by a profile edit (status changed before CiviCRM's)")
    if batch is not None:
        print(f"whole evidence step through /batches: {batch[0]:.1f} s in {batch[1]:,} requests "
              f"vs {step:.1f} s in {k:,} direct: ratio {batch[0] / step:.3f}")
    print(f"load average {os.getloadavg()[0]:.2f} at end")
    return 0 if ratio >= TARGET else 1
