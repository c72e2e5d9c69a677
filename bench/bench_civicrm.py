"""CiviCRM snapshot speed: a generated database (1,000,000 contacts, 1,200,000 emails, a
300,000-member group) snapshotted as the command a user runs (`civimc-audit --config …
snapshot --civicrm-only`, a process timed start to exit, its peak memory from os.wait4) and
in-process (`snapshot_civicrm`), each into a new store, against the baseline of what a user
would do instead: a plain `mariadb --batch --quick` dump into a file of the needed columns of
civicrm_contact and civicrm_email (whole tables) and the group's group_contact and history rows
(no joins, no filter beyond the group), in the same run. Target: at most 1.5 times the baseline.

Generation (server-side, from MariaDB's SEQUENCE engine) is not timed; the database is kept for
the next run unless --drop. Options: --contacts N (scales everything), --repeat N (best of N,
the order of the contenders rotating each round so all see the same machine load),
--regenerate, --drop, --transport auto|client|server (how the in-process snapshot moves rows;
see civicrm/reader.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import built_before
from civimc_audit.civicrm.columns import Schema
from civimc_audit.civicrm.reader import TRANSPORTS, snapshot_civicrm, table_reads
from civimc_audit.config import ENV_CIVICRM_PASSWORD, CiviCRMSettings
from civimc_audit.store import Store
from civimc_sandbox.civicrm.fixture import CiviFixture, create_database
from civimc_sandbox.localdb import ensure_server

TARGET = 1.5


def _generate(server, database: str, contacts: int) -> int:
    """Fill `database` with `contacts` contacts, 1.2 emails each, a group holding 30% of them
    (history for each, some with several rows) and noise in another group; returns the group id."""
    conn = server.connect(autocommit=False, local_infile=False)
    create_database(conn, database)
    fixture = CiviFixture(conn)
    group = fixture.group("bench", "Bench newsletter")
    other = fixture.group("other", "Other group")
    fixture.commit()
    n = contacts
    steps = [
        ("contacts",
         "INSERT INTO civicrm_contact (id, contact_type, first_name, last_name, display_name,"
         " sort_name, is_deleted, do_not_email, is_opt_out, is_deceased, source, created_date,"
         " modified_date)"
         f" SELECT seq, 'Individual', CONCAT('Firstname', seq), CONCAT('Lastname-', seq),"
         " CONCAT('Firstname', seq, ' Lastname-', seq), CONCAT('Lastname-', seq, ', Firstname', seq),"
         " seq % 97 = 0, seq % 53 = 0, seq % 61 = 0, seq % 1009 = 0, 'bench', NOW(), NOW()"
         f" FROM seq_1_to_{n}"),
        ("primary emails",
         "INSERT INTO civicrm_email (contact_id, location_type_id, email, is_primary, is_bulkmail,"
         " on_hold)"
         " SELECT seq, 1, CONCAT('firstname', seq, '.lastname@example', seq % 100, '.org'), 1, 0,"
         f" IF(seq % 211 = 0, 1, 0) FROM seq_1_to_{n}"),
        ("second emails",
         "INSERT INTO civicrm_email (contact_id, location_type_id, email, is_primary, is_bulkmail,"
         " on_hold)"
         " SELECT seq, 2, CONCAT('f', seq, '@work', seq % 1000, '.example.com'), 0, 1, 0"
         f" FROM seq_1_to_{n} WHERE seq % 5 = 0"),
        ("group members",
         "INSERT INTO civicrm_group_contact (group_id, contact_id, status)"
         f" SELECT {group}, seq, IF(seq % 17 = 0, 'Removed', 'Added')"
         f" FROM seq_1_to_{n} WHERE seq % 10 < 3"),
        ("history",
         "INSERT INTO civicrm_subscription_history (contact_id, group_id, `date`, method, status)"
         f" SELECT seq, {group}, '2020-01-01' + INTERVAL (seq % 1500) DAY + INTERVAL seq SECOND,"
         f" 'Admin', 'Added' FROM seq_1_to_{n} WHERE seq % 10 < 3"),
        ("history removals",
         "INSERT INTO civicrm_subscription_history (contact_id, group_id, `date`, method, status)"
         f" SELECT seq, {group}, '2024-06-01' + INTERVAL seq SECOND, 'Email', 'Removed'"
         f" FROM seq_1_to_{n} WHERE seq % 10 < 3 AND seq % 17 = 0"),
        ("other group history",
         "INSERT INTO civicrm_subscription_history (contact_id, group_id, `date`, method, status)"
         f" SELECT seq, {other}, '2021-01-01' + INTERVAL seq SECOND, 'API', 'Added'"
         f" FROM seq_1_to_{n} WHERE seq % 10 = 9"),
    ]
    with conn.cursor() as cur:
        cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
        for what, sql in steps:
            started = time.perf_counter()
            cur.execute(sql)
            conn.commit()
            print(f"  generated {what}: {cur.rowcount:,} rows in {time.perf_counter() - started:.0f}s",
                  flush=True)
        cur.execute("CREATE TABLE bench_done (contacts INT)")
        cur.execute("INSERT INTO bench_done VALUES (%s)", (n,))
        cur.execute("ANALYZE TABLE civicrm_contact, civicrm_email, civicrm_group_contact,"
                    " civicrm_subscription_history")
        cur.fetchall()
    conn.commit()
    conn.close()
    return group


def _existing(server, database: str, contacts: int) -> int | None:
    """The group id of a database generated before for this many contacts, else None."""
    row = built_before(server, database, "SELECT d.contacts, g.id FROM bench_done d"
                       " JOIN civicrm_group g ON g.name = 'bench'")
    return row[1] if row and row[0] == contacts else None


# Started from a small process: Linux counts the RSS a child is forked with in its peak, and
# this bench holds the in-process snapshot's memory.
LAUNCHER = """
import os, subprocess, sys, time
start = time.perf_counter()
proc = subprocess.Popen(sys.argv[2:])
_pid, status, usage = os.wait4(proc.pid, 0)
seconds = time.perf_counter() - start
with open(sys.argv[1], "w") as f:
    f.write(f"{os.waitstatus_to_exitcode(status)} {seconds} {usage.ru_maxrss}")
"""


def timed_process(argv: list[str], cwd: Path, stdout=subprocess.DEVNULL) -> tuple[float, float]:
    """Wall seconds and peak resident MB of one command, start to exit, measured (os.wait4) by
    a small launcher process; raises if it fails."""
    result = cwd / "timed.txt"
    proc = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, str(result), *argv], cwd=cwd,
                          stdout=stdout, stderr=subprocess.PIPE, check=False)
    code, seconds, kb = result.read_text().split()
    result.unlink()
    if proc.returncode or int(code):
        raise RuntimeError(f"{' '.join(argv)} exited {code}: "
                           f"{proc.stderr.decode(errors='replace')[-2000:]}")
    return float(seconds), int(kb) / 1024


def plain_dump_sql(settings: CiviCRMSettings, schema: Schema, groups: list[int]) -> str:
    """The baseline's SQL: the snapshot's columns of civicrm_contact and civicrm_email, whole
    tables, and of the groups' group_contact and history rows, each one plain SELECT (no
    joins, no filter beyond the groups)."""
    in_groups = f"group_id IN ({', '.join(str(int(g)) for g in groups)})"
    where = {"civicrm_group_contact": in_groups, "civicrm_subscription_history": in_groups}
    sql = []
    for read in table_reads(schema, settings):
        if read.name == "civicrm_group":
            continue
        cols = ", ".join(f"`{f.name}`" for f in read.fields if f.expr is not None)
        sql.append(f"SELECT {cols} FROM {read.name}"
                   + (f" WHERE {where[read.name]}" if read.name in where else "") + ";")
    return "\n".join(sql)


def _baseline(server, settings: CiviCRMSettings, sql: str, folder: Path) -> tuple[float, float]:
    """What a user would run instead: `mariadb --batch --quick` of the plain SELECTs into a
    file, as a process (wall seconds, peak MB)."""
    client = shutil.which("mariadb") or shutil.which("mysql")
    out = folder / "dump.tsv"
    with out.open("wb") as f:
        result = timed_process([client, "--no-defaults", "--batch", "--quick",
                                f"--host={server.host}", f"--port={server.port}",
                                f"--user={server.user}", settings.database, "-e", sql],
                               folder, stdout=f)
    out.unlink()
    return result


def _snapshot(settings: CiviCRMSettings, transport: str, folder: Path) -> tuple[float, dict, str]:
    """snapshot_civicrm in this process, into a new store."""
    with Store(folder / "inproc.duckdb") as store:
        started = time.perf_counter()
        snap = snapshot_civicrm(settings, store, transport=transport)
        seconds = time.perf_counter() - started
    remove_store(folder / "inproc.duckdb")
    return seconds, snap.row_counts, snap.meta["transport"]


CONFIG = """[civicrm]
host = "{host}"
port = {port}
database = "{database}"
user = "{user}"
group_id = {group}

[mailchimp]
list_id = "unused"

[store]
path = "cli.duckdb"
runs_dir = "runs"
"""


def _command(folder: Path) -> tuple[float, float]:
    """`civimc-audit --config … snapshot --civicrm-only` as a process into a new store (wall
    seconds, peak MB)."""
    cli = str(Path(sys.executable).with_name("civimc-audit"))
    result = timed_process([cli, "--config", "civimc-audit.toml", "snapshot", "--civicrm-only"],
                           folder)
    remove_store(folder / "cli.duckdb")
    return result


def remove_store(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        p.unlink(missing_ok=True)


def _rounds(n: int, contenders: list) -> list[list]:
    """Each contender's results over `n` rounds, the order rotating every round so none always
    runs on a warmer (or busier) machine."""
    results = [[] for _ in contenders]
    for i in range(n):
        for k in range(len(contenders)):
            j = (k + i) % len(contenders)
            results[j].append(contenders[j]())
    return results


def run(argv: list[str]) -> list[dict]:
    ap = argparse.ArgumentParser(prog="python -m bench civicrm --")
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--drop", action="store_true", help="drop the generated database after")
    ap.add_argument("--transport", choices=TRANSPORTS, default="auto",
                    help="how the in-process snapshot moves rows (default: the command-line"
                         " client if any; the command always uses auto)")
    args = ap.parse_args(argv)
    if not (shutil.which("mariadb") or shutil.which("mysql")):
        raise SystemExit("bench_civicrm needs the mysql/mariadb command-line client for its baseline")
    server = ensure_server()
    database = f"civimc_bench_civicrm_{args.contacts}"
    group = None if args.regenerate else _existing(server, database, args.contacts)
    if group is None:
        print(f"generating {database} ({args.contacts:,} contacts; not timed) …", flush=True)
        group = _generate(server, database, args.contacts)
    os.environ[ENV_CIVICRM_PASSWORD] = server.password
    os.environ["MYSQL_PWD"] = server.password  # the baseline client's, never on its command line
    settings = CiviCRMSettings(host=server.host, port=server.port, database=database,
                               user=server.user, group_id=group)
    with server.connect(database) as conn, conn.cursor() as cur:
        sql = plain_dump_sql(settings, Schema.read(cur, database), [group])
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="civimc-bench-civicrm-") as tmp:
        folder = Path(tmp)
        (folder / "civimc-audit.toml").write_text(CONFIG.format(
            host=server.host, port=server.port, database=database, user=server.user,
            group=group), encoding="utf-8")
        _baseline(server, settings, sql, folder)  # warm the server's caches for every contender
        counts, used = {}, ""

        def in_process():
            nonlocal counts, used
            seconds, counts, used = _snapshot(settings, args.transport, folder)
            return seconds

        base, inproc, command = _rounds(args.repeat, [
            lambda: _baseline(server, settings, sql, folder), in_process,
            lambda: _command(folder)])
    load_after = os.getloadavg()
    for i, (b, s, c) in enumerate(zip(base, inproc, command, strict=True)):
        print(f"  round {i + 1}: baseline {b[0]:.2f}s, snapshot in-process {s:.2f}s,"
              f" command {c[0]:.2f}s ({c[1]:.0f} MB)", flush=True)
    if args.drop:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    best_base = min(base)
    best_cmd = min(command)
    baseline = "mariadb --batch --quick plain dump to a file"
    notes = [f"rows: {counts}",
             f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
             f"on {os.cpu_count()} CPUs"]
    return [{
        "name": f"civicrm snapshot command ({args.contacts:,} contacts)",
        "seconds": best_cmd[0], "baseline": baseline, "baseline_seconds": best_base[0],
        "target": TARGET,
        "notes": ["command: civimc-audit --config civimc-audit.toml snapshot --civicrm-only",
                  f"peak memory {best_cmd[1]:.0f} MB (baseline client {best_base[1]:.0f} MB)",
                  "all rounds (baseline/command s): "
                  + ", ".join(f"{b[0]:.2f}/{c[0]:.2f}" for b, c in zip(base, command,
                                                                     strict=True))],
    }, {
        "name": f"civicrm snapshot in-process ({args.contacts:,} contacts)",
        "seconds": min(inproc), "baseline": baseline, "baseline_seconds": best_base[0],
        "target": TARGET,
        "notes": [f"transport: {used}", *notes],
    }]
