"""Mailchimp snapshot throughput and request costs, against the emulator in its own process.

    python -m bench mailchimp [--members N] [--rounds R] [--connections C] [--latency S]

1. The emulator process loads N members (time reported) and serves them over HTTP.
2. One untimed download and one untimed snapshot warm the emulator's caches (rendered pages,
   the view by last_changed that re-reads use), so every measured run sees the same server.
3. Alternating rounds of
   - baseline: the same page requests the snapshot's full pass makes (same client, offsets,
     `fields`, concurrency), bodies downloaded and dropped — no parsing, no store;
   - snapshot: `snapshot_mailchimp` into a fresh audit store (parsing, completeness re-read,
     de-duplication, DuckDB insert).
   The median of each is reported with the ratio snapshot/baseline (target ≥ 0.5 at a million
   members or more; below it the bench exits 1).
   `--latency S` makes the emulator wait S seconds before each answer, as the real API takes
   its time over a 1000-member page; 0 (the default) is loopback speed, the hardest case.
4. Request counts: what a complete snapshot costs (pages + re-read), and what applying K changes
   costs through the batch endpoint without and with 20% injected faults.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

KEY = "0badc0de0badc0de0badc0de0badc0de-us5"  # fake key, made up
LIST = "be7c4a11d0"
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "archived", "transactional")


def _members(n: int):
    for i in range(n):
        yield {"email_address": f"member{i}@example.org", "status": STATUSES[i % 6],
               "last_changed": "2025-06-01T12:00:00+00:00",
               "merge_fields": {"FNAME": f"First{i}", "LNAME": f"Last{i}"}}


def _serve(n: int, conn, latency: float = 0.0) -> None:
    """Child process: the emulator holding `n` members (answering after `latency` s)."""
    from civimc_sandbox.emulator import Emulator, EmulatorServer

    emu = Emulator(api_key=KEY)
    emu.record_requests = False
    if latency > 0:
        emu.faults.configure(rate_slow=1.0, slow_seconds=latency)
    emu.add_list(list_id=LIST, name="Benchmark audience")
    t = time.perf_counter()
    emu.load_members(LIST, _members(n))
    load = time.perf_counter() - t
    server = EmulatorServer(emu).start()
    conn.send((server.base_url, load))
    conn.recv()  # until told to stop
    server.stop()


def _client(base_url: str, connections: int):
    from civimc_audit.config import MailchimpSettings
    from civimc_audit.mailchimp.client import MailchimpClient

    return MailchimpClient(MailchimpSettings(list_id=LIST, base_url=base_url,
                                             max_connections=connections))


def download_pages(client, total: int) -> int:
    """The baseline: the snapshot's page requests, bodies fetched and dropped."""
    from civimc_audit.mailchimp.reader import MEMBER_FIELDS, PAGE_SIZE, STRIDE

    fields = ",".join(["total_items"] + [f"members.{f}" for f in MEMBER_FIELDS])
    path = f"/lists/{LIST}/members"

    def one(offset: int) -> int:
        return len(client.send("GET", path, params={"count": PAGE_SIZE, "offset": offset,
                                                    "fields": fields}).content)

    with ThreadPoolExecutor(client.max_connections) as pool:
        return sum(pool.map(one, [0, *range(STRIDE, total - 1, STRIDE)]))


def snapshot(base_url: str, connections: int, folder: Path):
    from civimc_audit.mailchimp.reader import snapshot_mailchimp
    from civimc_audit.store import Store

    path = folder / f"audit-{time.monotonic_ns()}.duckdb"
    client = _client(base_url, connections)
    try:
        with Store(path) as store:
            return snapshot_mailchimp(client.settings, store, client=client)
    finally:
        client.close()
        path.unlink(missing_ok=True)


def write_costs(k: int) -> list[str]:
    """Batch calls for K changes, fault-free and with 20% of requests failing."""
    from civimc_audit.mailchimp.writer import MailchimpWriter
    from civimc_sandbox.emulator import Emulator, EmulatorServer

    lines = []
    for rate in (0.0, 0.2):
        emu = Emulator(api_key=KEY)
        emu.add_list(list_id=LIST, name="Writes")
        emu.record_bodies = False
        emu.faults.seed(11)
        emu.faults.configure(rate_429=rate / 4, rate_5xx=rate / 4, rate_drop=rate / 4,
                             rate_drop_after=rate / 4)
        with EmulatorServer(emu) as server:
            client = _client(server.base_url, 5)
            client.backoff = 0.05
            results = MailchimpWriter(client, LIST).batch_update(
                [{"email_address": f"w{i}@example.org", "status": "subscribed"}
                 for i in range(k)])
            client.close()
        calls = sum(1 for r in emu.requests if r.method == "POST")
        ok = sum(r.ok for r in results)
        lines.append(f"apply {k} changes, {rate:.0%} faults: {calls} batch calls "
                     f"(ceil(K/500) = {math.ceil(k / 500)}, retries {client.stats['retries']}), "
                     f"{ok}/{k} ok")
    return lines


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench mailchimp")
    ap.add_argument("--members", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=5)
    ap.add_argument("--writes", type=int, default=5000)
    ap.add_argument("--latency", type=float, default=0.0,
                    help="seconds the emulator waits before each answer (default 0: loopback)")
    args = ap.parse_args(argv)
    from civimc_audit.config import ENV_MAILCHIMP_API_KEY

    os.environ[ENV_MAILCHIMP_API_KEY] = KEY  # the local emulator's made-up key
    n = args.members
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start",
          flush=True)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(n, child, args.latency), daemon=True)
    proc.start()
    base_url, load = parent.recv()
    print(f"emulator: loaded {n:,} members in {load:.1f} s", flush=True)
    try:
        with _client(base_url, args.connections) as client:
            t = time.perf_counter()
            nbytes = download_pages(client, n)
            cold = time.perf_counter() - t
        print(f"warm-up (emulator renders every page once): {n / cold:,.0f} members/s, "
              f"{nbytes / n:.0f} bytes/member", flush=True)
        base_t, snap_t, base_cpu, snap_cpu, snap = [], [], [], [], None
        with tempfile.TemporaryDirectory() as tmp:
            snapshot(base_url, args.connections, Path(tmp))  # warm-up, untimed
            for r in range(args.rounds):
                with _client(base_url, args.connections) as client:
                    t, c = time.perf_counter(), time.process_time()
                    download_pages(client, n)
                    base_t.append(time.perf_counter() - t)
                    base_cpu.append(time.process_time() - c)
                t, c = time.perf_counter(), time.process_time()
                snap = snapshot(base_url, args.connections, Path(tmp))
                snap_t.append(time.perf_counter() - t)
                snap_cpu.append(time.process_time() - c)
                phases = ", ".join(f"{k} {v:.1f}s" for k, v in snap.meta["seconds"].items())
                print(f"round {r + 1}: baseline {n / base_t[-1]:,.0f} members/s, snapshot "
                      f"{n / snap_t[-1]:,.0f} members/s ({phases}); load average "
                      f"{os.getloadavg()[0]:.2f}", flush=True)
        b, s = statistics.median(base_t), statistics.median(snap_t)
        assert snap.status == "complete" and snap.row_counts["mailchimp_member"] == n, snap
        print(f"baseline (download only): {n / b:,.0f} members/s ({b:.1f} s)")
        print(f"snapshot (parse + store + completeness): {n / s:,.0f} members/s ({s:.1f} s)")
        print(f"ratio snapshot/baseline: {b / s:.3f} (target >= 0.5"
              f"{'' if b / s >= 0.5 else ', missed'})")
        print(f"client CPU per member: baseline {statistics.median(base_cpu) / n * 1e6:.1f} us, "
              f"snapshot {statistics.median(snap_cpu) / n * 1e6:.1f} us (this process; DuckDB "
              "threads included)")
        pages = len(range(0, n - 1, 999)) if n > 1 else 1
        print(f"requests for a complete snapshot of {n:,}: {snap.meta['requests']} = "
              f"1 audience + {snap.meta['page_requests']} member pages "
              f"(full pass ceil((N-1)/999) = {pages}, +1 completeness re-read)")
        print(f"load average {os.getloadavg()[0]:.2f} at end")
    finally:
        parent.send("stop")
        proc.join(timeout=30)
    for line in write_costs(args.writes):
        print(line)
    # The target is set for a million members; smaller audiences are mostly fixed costs.
    return 1 if n >= 1_000_000 and b / s < 0.5 else 0
