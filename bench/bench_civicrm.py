"""CiviCRM snapshot speed: `snapshot_civicrm` of a generated database (1,000,000 contacts,
1,200,000 emails, a 300,000-member group) against the baseline `mysql --batch --quick` dump of
the same rows and columns to /dev/null, in the same run. Target: at most 1.5 times the baseline.

Generation (server-side, from MariaDB's SEQUENCE engine) is not timed; the database is kept for
the next run unless --drop. Options: --contacts N (scales everything), --repeat N (best of N,
alternating baseline and snapshot so both see the same machine load), --regenerate, --drop,
--transport auto|client|server (how the snapshot moves rows; see civicrm/reader.py).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from civimc_audit.civicrm.columns import Schema
from civimc_audit.civicrm.reader import OPTIMIZER_SWITCH, TRANSPORTS, snapshot_civicrm, table_reads
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
    try:
        conn = server.connect(database)
    except Exception:
        return None
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT contacts FROM bench_done")
            row = cur.fetchone()
            if not row or row[0] != contacts:
                return None
            cur.execute("SELECT id FROM civicrm_group WHERE name = 'bench'")
            return cur.fetchone()[0]
    except Exception:
        return None
    finally:
        conn.close()


def _baseline(server, settings: CiviCRMSettings, group: int) -> float:
    """`mysql --batch --quick` of the very SELECTs the snapshot makes, in one session with the
    same session settings (so the baseline gets the same good query plans)."""
    conn = server.connect(settings.database)
    with conn.cursor() as cur:
        reads = table_reads(Schema.read(cur, settings.database), settings)
    conn.close()
    sql = ";\n".join(r.plain_sql().replace("%(g)s", str(group)) for r in reads) + ";"
    client = shutil.which("mariadb") or shutil.which("mysql")
    env = dict(os.environ, MYSQL_PWD=server.password)
    started = time.perf_counter()
    subprocess.run([client, "--batch", "--quick", f"--host={server.host}",
                    f"--port={server.port}", f"--user={server.user}", settings.database,
                    "-e", "SET time_zone = '+00:00';\n"
                    f"SET SESSION optimizer_switch = '{OPTIMIZER_SWITCH}';\n" + sql],
                   stdout=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - started


def _snapshot(settings: CiviCRMSettings, transport: str) -> tuple[float, dict, str]:
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.duckdb") as store:
        started = time.perf_counter()
        snap = snapshot_civicrm(settings, store, transport=transport)
        return time.perf_counter() - started, snap.row_counts, snap.meta["transport"]


def run(argv: list[str]) -> list[dict]:
    ap = argparse.ArgumentParser(prog="python -m bench civicrm --")
    ap.add_argument("--contacts", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--regenerate", action="store_true")
    ap.add_argument("--drop", action="store_true", help="drop the generated database after")
    ap.add_argument("--transport", choices=TRANSPORTS, default="auto",
                    help="how the snapshot moves rows (default: the command-line client if any)")
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
    settings = CiviCRMSettings(host=server.host, port=server.port, database=database,
                               user=server.user, group_id=group)
    load_before = os.getloadavg()
    base_times, snap_times, counts = [], [], {}
    _baseline(server, settings, group)  # warm the server's caches for both contenders
    for i in range(args.repeat):
        # Alternate the order so neither side always runs on a warmer machine.
        if i % 2:
            seconds, counts, used = _snapshot(settings, args.transport)
            snap_times.append(seconds)
            base_times.append(_baseline(server, settings, group))
        else:
            base_times.append(_baseline(server, settings, group))
            seconds, counts, used = _snapshot(settings, args.transport)
            snap_times.append(seconds)
        print(f"  round {i + 1}: baseline {base_times[-1]:.2f}s, snapshot {snap_times[-1]:.2f}s",
              flush=True)
    load_after = os.getloadavg()
    if args.drop:
        with server.connect() as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
    return [{
        "name": f"civicrm snapshot ({args.contacts:,} contacts)",
        "seconds": min(snap_times), "baseline": "mysql --batch --quick",
        "baseline_seconds": min(base_times), "target": TARGET,
        "notes": [f"rows: {counts}", f"transport: {used}",
                  "all rounds (baseline/snapshot s): "
                  + ", ".join(f"{b:.2f}/{s:.2f}" for b, s in zip(base_times, snap_times,
                                                               strict=True)),
                  f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
                  f"on {os.cpu_count()} CPUs"],
    }]
