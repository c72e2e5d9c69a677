"""Mailchimp snapshot throughput and request costs, against the emulator in its own process
(issue 18 point 3).

    python -m bench mailchimp [--members N] [--rounds R] [--connections C]
                              [--latencies 0,0.1 | --latency S] [--no-cli] [--writes K]

1. The emulator process loads N members (time reported) and serves them over HTTP. One untimed
   download and one untimed snapshot warm its caches (rendered pages, the view by last_changed
   that re-reads use), so every measured run sees the same server.
2. For each latency (default: 0, loopback, the hardest case; and 0.1 s before every answer, as
   the real API takes its time over a 1000-member page), alternating rounds of
   - baseline: the same page requests the snapshot's full pass makes (same client, offsets,
     `fields`, concurrency), bodies downloaded and dropped — no parsing, no store;
   - snapshot: `snapshot_mailchimp` into a fresh audit store (parsing, completeness re-read,
     de-duplication, DuckDB insert).
   The medians give the ratio snapshot/baseline throughput: target ≥ 0.6 at loopback and
   ≥ 0.9 with a latency of 0.1 s or more.
3. As a user runs it: `civimc-audit --config … snapshot --mailchimp-only` in its own process,
   start to exit, peak memory from os.wait4, against the same baseline (at loopback).
4. Incremental: 1% of the members are changed in the emulator (last_changed now), then
   `snapshot_mailchimp(incremental=True)` on the store of a full in-process snapshot, and
   `snapshot --mailchimp-only --incremental` as a process on the CLI's store. Each is reported
   as a fraction of its full snapshot in requests and in time (target ≤ 0.1 each).
5. Request counts: what a complete snapshot costs (pages + re-read), and what applying K changes
   costs through the batch endpoint without and with 20% injected faults.
The targets hold at a million members (smaller audiences are mostly fixed costs): a miss there
makes the bench exit 1.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from bench import STORE_ONLY_CONFIG
from bench.bench_workflow import timed_process

KEY = "0badc0de0badc0de0badc0de0badc0de-us5"  # fake key, made up
LIST = "be7c4a11d0"
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "archived", "transactional")
TARGET_LOOPBACK = 0.6  # snapshot/baseline throughput at loopback
TARGET_LATENT = 0.9  # … with a latency of 0.1 s or more per answer
TARGET_INCREMENTAL = 0.1  # incremental/full, in requests and in time
CHANGED = 0.01  # the share of members changed before an incremental snapshot
FULL_SIZE = 1_000_000  # the size the targets are set for


def _members(n: int):
    for i in range(n):
        yield {"email_address": f"member{i}@example.org", "status": STATUSES[i % 6],
               "last_changed": "2025-06-01T12:00:00+00:00",
               "merge_fields": {"FNAME": f"First{i}", "LNAME": f"Last{i}"}}


def _touch(emu, n: int, k: int, start: int) -> float:
    """Change `k` members spread over the audience (a new first name, last_changed now)."""
    t = time.perf_counter()
    step = max(1, n // k)
    for j in range(k):
        i = (start + j * step) % n
        emu.update_member(LIST, f"member{i}@example.org",
                          merge_fields={"FNAME": f"Changed{start}-{i}"})
    return time.perf_counter() - t


def _serve(n: int, conn) -> None:
    """Child process: the emulator holding `n` members, until told to stop. Commands:
    ("latency", S) sets the wait before each answer; ("touch", (k, start)) changes k members."""
    from civimc_sandbox.emulator import Emulator, EmulatorServer

    emu = Emulator(api_key=KEY)
    emu.record_requests = False
    emu.add_list(list_id=LIST, name="Benchmark audience")
    t = time.perf_counter()
    emu.load_members(LIST, _members(n))
    load = time.perf_counter() - t
    server = EmulatorServer(emu).start()
    conn.send((server.base_url, load))
    while True:
        cmd, arg = conn.recv()
        if cmd == "latency":
            emu.faults.configure(rate_slow=1.0 if arg > 0 else 0.0, slow_seconds=arg)
            conn.send(None)
        elif cmd == "touch":
            conn.send(_touch(emu, n, *arg))
        else:
            break
    server.stop()


class EmulatorProcess:
    """The emulator in a process of its own (so its CPU is not the client's GIL)."""

    def __init__(self, n: int):
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(n, child), daemon=True)
        self.proc.start()
        self.base_url, self.load_seconds = self.conn.recv()

    def ask(self, cmd: str, arg):
        self.conn.send((cmd, arg))
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.send(("stop", None))
        self.proc.join(timeout=30)


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


def snapshot(base_url: str, connections: int, path: Path, incremental: bool = False):
    """One in-process snapshot into the store at `path`."""
    from civimc_audit.mailchimp.reader import snapshot_mailchimp
    from civimc_audit.store import Store

    client = _client(base_url, connections)
    try:
        with Store(path) as store:
            return snapshot_mailchimp(client.settings, store, client=client,
                                      incremental=incremental)
    finally:
        client.close()


@dataclass
class Pass:
    """Medians of one latency's rounds."""

    latency: float
    baseline: float
    snapshot: float
    baseline_cpu: float
    snapshot_cpu: float
    snap: object

    @property
    def ratio(self) -> float:
        return self.baseline / self.snapshot

    @property
    def target(self) -> float:
        return TARGET_LATENT if self.latency >= 0.1 else TARGET_LOOPBACK


def measure_pass(emu: EmulatorProcess, args, n: int, folder: Path, latency: float) -> Pass:
    """Alternating baseline and snapshot rounds at one latency; the last snapshot's store is
    kept as folder/full.duckdb (the incremental snapshot's base)."""
    emu.ask("latency", latency)
    base_t, snap_t, base_cpu, snap_cpu, snap = [], [], [], [], None
    for r in range(args.rounds):
        with _client(emu.base_url, args.connections) as client:
            t, c = time.perf_counter(), time.process_time()
            download_pages(client, n)
            base_t.append(time.perf_counter() - t)
            base_cpu.append(time.process_time() - c)
        path = folder / "full.duckdb"
        path.unlink(missing_ok=True)
        t, c = time.perf_counter(), time.process_time()
        snap = snapshot(emu.base_url, args.connections, path)
        snap_t.append(time.perf_counter() - t)
        snap_cpu.append(time.process_time() - c)
        phases = ", ".join(f"{k} {v:.1f}s" for k, v in snap.meta["seconds"].items())
        print(f"  latency {latency:g} s, round {r + 1}: baseline {n / base_t[-1]:,.0f} "
              f"members/s, snapshot {n / snap_t[-1]:,.0f} members/s ({phases}); load average "
              f"{os.getloadavg()[0]:.2f}", flush=True)
    assert snap.status == "complete" and snap.row_counts["mailchimp_member"] == n, snap
    med = statistics.median
    return Pass(latency, med(base_t), med(snap_t), med(base_cpu), med(snap_cpu), snap)


def print_pass(p: Pass, n: int) -> bool:
    """The figures of one latency; True if its target was missed."""
    missed = p.ratio < p.target
    print(f"latency {p.latency:g} s: baseline (download only) {n / p.baseline:,.0f} members/s "
          f"({p.baseline:.1f} s); snapshot {n / p.snapshot:,.0f} members/s ({p.snapshot:.1f} s)")
    print(f"    ratio snapshot/baseline: {p.ratio:.3f} (target ≥ {p.target:g})"
          + ("  MISSED" if missed else "  ok"))
    print(f"    client CPU per member: baseline {p.baseline_cpu / n * 1e6:.1f} us, snapshot "
          f"{p.snapshot_cpu / n * 1e6:.1f} us (this process; DuckDB threads included)")
    return missed


def _cli(folder: Path, base_url: str, connections: int) -> list[str]:
    config = STORE_ONLY_CONFIG.format(store="cli.duckdb").replace(
        '[mailchimp]\nlist_id = "generated"',
        f'[mailchimp]\nlist_id = "{LIST}"\nbase_url = "{base_url}"\n'
        f"max_connections = {connections}")
    (folder / "civimc-audit.toml").write_text(config, encoding="utf-8")
    return [str(Path(sys.executable).with_name("civimc-audit")), "--config", "civimc-audit.toml",
            "snapshot", "--mailchimp-only", "--json"]


def _cli_snapshot(cmd: list[str], folder: Path) -> tuple[float, float, dict]:
    """Time and peak MB of one CLI snapshot, and its snapshot document's Mailchimp part."""
    out = folder / "snapshot.json"
    with out.open("wb") as f:
        seconds, peak = timed_process(cmd, folder, stdout=f)
    doc = json.loads(out.read_text(encoding="utf-8"))["mailchimp"]
    import duckdb

    con = duckdb.connect(str(folder / "cli.duckdb"), read_only=True)
    try:  # the document leaves the meta out; the store has it
        (meta,), = con.execute("SELECT meta FROM snapshots WHERE id = ?", [doc["id"]]).fetchall()
    finally:
        con.close()
    return seconds, peak, {**doc, "meta": json.loads(meta)}


def _fraction_line(what: str, inc: float, full: float, unit: str) -> tuple[str, bool]:
    frac = inc / full
    missed = frac > TARGET_INCREMENTAL
    return (f"    {what}: {inc:{unit}} of {full:{unit}} = {frac:.3f} (target ≤ "
            f"{TARGET_INCREMENTAL:g})" + ("  MISSED" if missed else "  ok")), missed


def measure_incremental(emu: EmulatorProcess, args, n: int, folder: Path, loop: Pass) -> bool:
    """The CLI's full and incremental snapshots and the in-process incremental one (after
    `loop`'s full snapshot, into folder/full.duckdb); True if a target was missed."""
    emu.ask("latency", 0.0)
    missed = False
    k = max(1, round(n * CHANGED))
    cli = None
    if args.cli:
        cli = _cli(folder, emu.base_url, args.connections)
        seconds, peak, doc = _cli_snapshot(cli, folder)
        ratio = loop.baseline / seconds
        miss = ratio < TARGET_LOOPBACK
        missed |= miss
        print(f"CLI `snapshot --mailchimp-only` (process start to exit): {seconds:.1f} s, peak "
              f"{peak:.0f} MB; ratio to the loopback baseline {ratio:.3f} (target ≥ "
              f"{TARGET_LOOPBACK:g})" + ("  MISSED" if miss else "  ok"), flush=True)
        cli_full = (seconds, doc["meta"]["requests"])
    touched = emu.ask("touch", (k, 0))
    print(f"changed {k:,} members ({CHANGED:.0%}) in the emulator in {touched:.1f} s", flush=True)
    full = loop.snap
    t = time.perf_counter()
    inc = snapshot(emu.base_url, args.connections, folder / "full.duckdb", incremental=True)
    inc_t = time.perf_counter() - t
    assert inc.status == "complete" and inc.meta.get("mode") == "incremental", inc
    assert inc.row_counts["mailchimp_member"] == n, inc
    phases = ", ".join(f"{k} {v:.1f}s" for k, v in inc.meta["seconds"].items())
    print(f"incremental snapshot in-process after {k:,} changes: {inc_t:.2f} s ({phases}), "
          f"{inc.meta['requests']} requests, {inc.meta['rows_read']:,} members read")
    for line, miss in (_fraction_line("requests", inc.meta["requests"], full.meta["requests"], "d"),
                       _fraction_line("time", inc_t, loop.snapshot, ".2f")):
        print(line)
        missed |= miss
    if cli is not None:
        emu.ask("touch", (k, 1))  # another 1%, since the CLI's full snapshot
        seconds, peak, doc = _cli_snapshot([*cli, "--incremental"], folder)
        assert doc["status"] == "complete" and doc["mode"] == "incremental", doc
        print(f"CLI `snapshot --mailchimp-only --incremental` after {k:,} more changes: "
              f"{seconds:.2f} s, peak {peak:.0f} MB, {doc['meta']['requests']} requests")
        for line, miss in (_fraction_line("requests", doc["meta"]["requests"], cli_full[1], "d"),
                           _fraction_line("time", seconds, cli_full[0], ".2f")):
            print(line)
            missed |= miss
    return missed


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


def _args(argv: list[str]):
    ap = argparse.ArgumentParser(prog="python -m bench mailchimp")
    ap.add_argument("--members", type=int, default=FULL_SIZE)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--connections", type=int, default=5)
    ap.add_argument("--writes", type=int, default=5000)
    ap.add_argument("--latencies", default="0,0.1",
                    help="comma-separated seconds the emulator waits before each answer "
                         "(default 0,0.1: loopback, then 0.1 s)")
    ap.add_argument("--latency", type=float, help="only this one latency")
    ap.add_argument("--no-cli", dest="cli", action="store_false",
                    help="skip the CLI-process snapshots")
    args = ap.parse_args(argv)
    args.latencies = ([args.latency] if args.latency is not None
                      else [float(s) for s in args.latencies.split(",")])
    return args


def main(argv: list[str]) -> int:
    args = _args(argv)
    from civimc_audit.config import ENV_MAILCHIMP_API_KEY

    os.environ[ENV_MAILCHIMP_API_KEY] = KEY  # the local emulator's made-up key (CLI too)
    n = args.members
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start",
          flush=True)
    emu = EmulatorProcess(n)
    print(f"emulator: loaded {n:,} members in {emu.load_seconds:.1f} s", flush=True)
    missed = False
    try:
        with _client(emu.base_url, args.connections) as client:
            t = time.perf_counter()
            nbytes = download_pages(client, n)
            cold = time.perf_counter() - t
        print(f"warm-up (emulator renders every page once): {n / cold:,.0f} members/s, "
              f"{nbytes / n:.0f} bytes/member", flush=True)
        with tempfile.TemporaryDirectory(prefix="civimc-bench-mc-") as tmp:
            folder = Path(tmp)
            snapshot(emu.base_url, args.connections, folder / "warm.duckdb")  # untimed
            passes = [measure_pass(emu, args, n, folder, lat)
                      for lat in sorted(args.latencies, reverse=True)]
            loop = passes[-1]  # the lowest latency: its store is the incremental's base
            for p in sorted(passes, key=lambda p: p.latency):
                missed |= print_pass(p, n)
            snap = loop.snap
            pages = len(range(0, n - 1, 999)) if n > 1 else 1
            print(f"requests for a complete snapshot of {n:,}: {snap.meta['requests']} = "
                  f"1 audience + {snap.meta['page_requests']} member pages "
                  f"(full pass ceil((N-1)/999) = {pages}, +1 completeness re-read) + 1 "
                  "interest catalogue", flush=True)
            size = sum(f.stat().st_size for f in folder.glob("full.duckdb*"))
            print(f"store file after one full snapshot: {size / 1e6:,.0f} MB "
                  f"({size / n:.0f} bytes/member)", flush=True)
            missed |= measure_incremental(emu, args, n, folder, loop)
        print(f"load average {os.getloadavg()[0]:.2f} at end")
    finally:
        emu.stop()
    for line in write_costs(args.writes):
        print(line)
    if n < FULL_SIZE:
        print(f"(targets are set for {FULL_SIZE:,} members; at {n:,} a miss does not fail)")
        return 0
    return 1 if missed else 0
