"""`civimc-audit run` end to end against real sources of the same size (issue 18 point 4).

    python -m bench run [--people N] [--changed F] [--connections C] [--regenerate] [--keep DIR]

Untimed set-up:
- a CiviCRM database in the local MariaDB (localdb.ensure_server), named after its size and
  kept for the next run (like bench civicrm): the generated population (population.generate,
  its archetypes repeated with unique addresses, as population.write_store repeats them) is
  written once into staging tables and copied server-side (`INSERT … SELECT` over MariaDB's
  SEQUENCE engine), which is how a million people load in seconds;
- a Mailchimp emulator in a process of its own holding the SAME population's members;
- a config file (as `civimc-audit init` writes one, filled in) with the secrets in the
  environment (config/environment.py).

Timed, each as a process from start to exit with its peak memory (bench_workflow.timed_process):
1. the baseline, what a user would do instead: a plain `mariadb --batch --quick` dump of the
   columns the audit needs (civicrm_contact, civicrm_email, the group's group_contact and
   subscription-history rows; no joins) plus a raw download of the audience's member pages;
2. `civimc-audit --config … run` (target: under RUN_SECONDS and RUN_MEMORY_MB at a million
   people; its ratio to the baseline is printed);
3. the report step inside that run (summary.json's durations; target ≤ REPORT_SECONDS);
4. after `--changed` (1%) of the members changed in the emulator (last_changed bumped), the
   incremental `run` (target ≤ INCREMENTAL_RATIO of the full one);
5. `civimc-audit report` alone (target ≤ REPORT_SECONDS, under RUN_MEMORY_MB).
The absolute targets are the issue's, for this 2-core machine at 1,000,000 people: they are
checked only at that size or above (smaller sizes print them for information). Exits 1 on a
missed target.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench import built_before
from bench.bench_workflow import RUN_MEMORY_MB, Figure, print_figures, timed_process

BASE_PEOPLE = 10_000
RUN_SECONDS = 60.0
REPORT_SECONDS = 10.0
INCREMENTAL_RATIO = 0.5
FULL_SIZE = 1_000_000      # the size the absolute targets are set for
LAYOUT = 1                 # bump when the generated database changes shape
KEY = "0badc0de0badc0de0badc0de0badc0de-us5"  # the emulator's made-up key
LIST = "be7c4a11d0"
SEED = 1

CONFIG = """# civimc-audit configuration written by `python -m bench run` (secrets in the environment)
[civicrm]
host = "{host}"
port = {port}
database = "{database}"
user = "{user}"
group_id = {group_id}

[mailchimp]
list_id = "{list_id}"
base_url = "{base_url}"
max_connections = {connections}

[store]
path = "audit.duckdb"
runs_dir = "runs"
"""


def population(people: int):
    """The base population and how many copies of it make `people` (as write_store does)."""
    from civimc_sandbox.population import generate

    base = generate(min(BASE_PEOPLE, people), seed=SEED)
    return base, max(1, round(people / base.people))


def _prefix(k: int) -> str:
    """The address prefix of copy k (copy 0 keeps the instance's own addresses)."""
    return "" if k == 0 else f"c{k}."


# -- CiviCRM ---------------------------------------------------------------------------------
_STAGING = {
    "civicrm_contact": ("id BIGINT, contact_type VARCHAR(64), first_name VARCHAR(64),"
                        " last_name VARCHAR(64), display_name VARCHAR(128),"
                        " is_deleted TINYINT, do_not_email TINYINT, is_opt_out TINYINT,"
                        " is_deceased TINYINT"),
    "civicrm_email": ("id BIGINT, contact_id BIGINT, lead VARCHAR(16), rest VARCHAR(254),"
                      " is_primary TINYINT, is_bulkmail TINYINT, on_hold TINYINT,"
                      " location_type_id INT"),
    "civicrm_group_contact": "id BIGINT, group_id INT, contact_id BIGINT, status VARCHAR(8)",
    "civicrm_subscription_history": ("id BIGINT, contact_id BIGINT, group_id INT,"
                                     " `date` TIMESTAMP NULL, method VARCHAR(8),"
                                     " status VARCHAR(8)"),
}

# The copy of each staging table into the real one; {s} is the id stride between copies.
_COPIES = {
    "civicrm_contact": (
        "(id, contact_type, first_name, last_name, display_name, sort_name, is_deleted,"
        " do_not_email, is_opt_out, is_deceased, source, created_date, modified_date)",
        "id + seq * {s}, contact_type, first_name, last_name, display_name,"
        " CONCAT(last_name, ', ', first_name), is_deleted, do_not_email, is_opt_out,"
        " is_deceased, 'bench', NOW(), NOW()"),
    "civicrm_email": (
        "(id, contact_id, email, is_primary, is_bulkmail, on_hold, location_type_id, hold_date)",
        "id + seq * {s}, contact_id + seq * {s},"
        " CONCAT(lead, IF(seq = 0, '', CONCAT('c', seq, '.')), rest), is_primary, is_bulkmail,"
        " on_hold, location_type_id, IF(on_hold > 0, NOW(), NULL)"),
    "civicrm_group_contact": (
        "(id, group_id, contact_id, status)",
        "id + seq * {s}, group_id, contact_id + seq * {s}, status"),
    "civicrm_subscription_history": (
        "(id, contact_id, group_id, `date`, method, status)",
        # A history row without a date is stored as the zero date, as old imports left them.
        "id + seq * {s}, contact_id + seq * {s}, group_id,"
        " coalesce(`date`, '0000-00-00 00:00:00'), method, status"),
}


def _split_lead(address: str) -> tuple[str, str]:
    """A stored address as (leading whitespace, the rest): a copy's prefix goes between."""
    rest = address.lstrip()
    return address[:len(address) - len(rest)], rest


def _staging_rows(table: str, rows: list[dict]) -> list[tuple]:
    if table == "civicrm_email":
        return [(r["id"], r["contact_id"], *_split_lead(r["email"]), int(r["is_primary"]),
                 int(r["is_bulkmail"]), r["on_hold"], r["location_type_id"]) for r in rows]
    if table == "civicrm_contact":
        return [(r["id"], r["contact_type"], r["first_name"], r["last_name"][:64],
                 r["display_name"], int(r["is_deleted"]), int(r["do_not_email"]),
                 int(r["is_opt_out"]), int(r["is_deceased"])) for r in rows]
    if table == "civicrm_group_contact":
        return [(r["id"], r["group_id"], r["contact_id"], r["status"]) for r in rows]
    return [(r["id"], r["contact_id"], r["group_id"], r["date"], r["method"], r["status"])
            for r in rows]


def build_civicrm(server, database: str, people: int) -> int:
    """(Re)create `database` holding the population; returns the group id."""
    from civimc_sandbox.civicrm.fixture import CiviFixture, create_database
    from civimc_sandbox.population import snapshot_frames

    base, copies = population(people)
    conn = server.connect(autocommit=False)
    create_database(conn, database)
    group = CiviFixture(conn).group("bench", "Bench newsletter")
    conn.commit()
    frames = snapshot_frames(base, group)
    stride = max(len(frames[t]) for t in _STAGING) + 1
    with conn.cursor() as cur:
        cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0, sql_mode = ''")
        for table, columns in _STAGING.items():
            cur.execute(f"CREATE TABLE bench_{table} ({columns}) CHARSET=utf8mb4")
            rows = _staging_rows(table, frames[table])
            marks = ", ".join(["%s"] * len(rows[0]))
            cur.executemany(f"INSERT INTO bench_{table} VALUES ({marks})", rows)
            into, select = _COPIES[table]
            started = time.perf_counter()
            cur.execute(f"INSERT INTO {table} {into} SELECT {select.format(s=stride)}"
                        f" FROM bench_{table} JOIN seq_0_to_{copies - 1}")
            conn.commit()
            print(f"  {table}: {cur.rowcount:,} rows in {time.perf_counter() - started:.0f} s",
                  flush=True)
            cur.execute(f"DROP TABLE bench_{table}")
        cur.execute("ANALYZE TABLE civicrm_contact, civicrm_email, civicrm_group_contact,"
                    " civicrm_subscription_history")
        cur.fetchall()
        cur.execute("CREATE TABLE bench_done (people INT, layout INT, group_id INT)")
        cur.execute("INSERT INTO bench_done VALUES (%s, %s, %s)", (people, LAYOUT, group))
    conn.commit()
    conn.close()
    return group


def existing_group(server, database: str, people: int) -> int | None:
    """The group id of a database built before for this size and layout, else None."""
    row = built_before(server, database, "SELECT people, layout, group_id FROM bench_done")
    return row[2] if row and row[:2] == (people, LAYOUT) else None


def dump_sql(group: int) -> str:
    """The baseline's queries: the columns the audit needs, no joins, only the group's rows."""
    return (
        "SELECT id, contact_type, first_name, last_name, display_name, is_deleted,"
        " do_not_email, is_opt_out, is_deceased FROM civicrm_contact;\n"
        "SELECT id, contact_id, email, is_primary, is_bulkmail, on_hold, location_type_id"
        " FROM civicrm_email;\n"
        f"SELECT id, contact_id, status FROM civicrm_group_contact WHERE group_id = {group};\n"
        "SELECT id, contact_id, `date`, method, status FROM civicrm_subscription_history"
        f" WHERE group_id = {group};\n")


# -- Mailchimp -------------------------------------------------------------------------------
def members(people: int):
    """The population's Mailchimp members, copy by copy, with the copies' prefixes."""
    from civimc_sandbox.population import member_dicts

    base, copies = population(people)
    rows = list(member_dicts(base))
    for k in range(copies):
        prefix = _prefix(k)
        for m in rows:
            yield {**m, "email_address": prefix + m["email_address"]} if prefix else m


def _serve(people: int, conn) -> None:
    """Child process: the emulator holding the population's members. Answers ("change", f)
    by changing that fraction of the members (a profile edit: last_changed becomes now)."""
    from civimc_sandbox.emulator import Emulator, EmulatorServer

    emu = Emulator(api_key=KEY)
    emu.record_requests = False
    emu.record_bodies = False
    emu.max_connections = None
    emu.add_list(list_id=LIST, name="Benchmark audience")
    started = time.perf_counter()
    emu.load_members(LIST, members(people))
    loaded = time.perf_counter() - started
    server = EmulatorServer(emu).start()
    conn.send((server.base_url, loaded, emu.member_count(LIST)))
    while True:
        command, *args = conn.recv()
        if command == "stop":
            break
        order = emu.list_state(LIST).order
        step = max(1, round(1 / args[0]))
        changed = 0
        for i, rec in enumerate(order[::step]):
            emu.update_member(LIST, rec.id, merge_fields={"FNAME": f"Changed{i}"})
            changed += 1
        conn.send(changed)
    server.stop()


DOWNLOAD = ("import sys; from bench.bench_mailchimp import _client, download_pages;"
            " c = _client(sys.argv[1], int(sys.argv[2])); download_pages(c, int(sys.argv[3]));"
            " c.close()")


# -- the measurement -------------------------------------------------------------------------
def _answer(conn, proc):
    """The emulator's next answer; raises if its process died instead of answering."""
    while not conn.poll(1):
        if not proc.is_alive():
            raise RuntimeError(f"the emulator process exited ({proc.exitcode})")
    return conn.recv()


def latest_summary(folder: Path) -> dict:
    """summary.json of the newest run folder under runs/."""
    runs = sorted(p for p in (folder / "runs").iterdir() if (p / "summary.json").exists())
    return json.loads((runs[-1] / "summary.json").read_text(encoding="utf-8"))


def _steps(summary: dict) -> str:
    durations = summary.get("durations") or {}
    return "steps: " + ", ".join(f"{k} {v:.1f}s" for k, v in durations.items() if k != "total")


def measure(args, server, database: str, group: int, folder: Path) -> list[Figure]:
    """Start the emulator, write the config, time the baseline and the commands."""
    from civimc_audit.config import ENV_CIVICRM_PASSWORD, ENV_MAILCHIMP_API_KEY

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(args.people, child), daemon=True)
    proc.start()
    base_url, loaded, audience = _answer(parent, proc)
    print(f"  emulator: {audience:,} members loaded in {loaded:.0f} s (untimed)", flush=True)
    os.environ[ENV_CIVICRM_PASSWORD] = server.password
    os.environ[ENV_MAILCHIMP_API_KEY] = KEY
    (folder / "civimc-audit.toml").write_text(CONFIG.format(
        host=server.host, port=server.port, database=database, user=server.user,
        group_id=group, list_id=LIST, base_url=base_url, connections=args.connections),
        encoding="utf-8")
    cli = [str(Path(sys.executable).with_name("civimc-audit")), "--config", "civimc-audit.toml"]
    repo = Path(__file__).resolve().parent.parent
    client = shutil.which("mariadb") or shutil.which("mysql")
    try:
        dump = timed_process([client, "--batch", "--quick", f"--host={server.host}",
                              f"--port={server.port}", f"--user={server.user}", database,
                              "-e", dump_sql(group)], folder)
        download = timed_process([sys.executable, "-c", DOWNLOAD, base_url,
                                  str(args.connections), str(audience)], repo)
        baseline = dump[0] + download[0]
        print(f"  baseline: mariadb dump {dump[0]:.2f} s + member pages {download[0]:.2f} s",
              flush=True)
        full_s, full_mb = timed_process([*cli, "run"], folder)
        full = latest_summary(folder)
        print(f"  run: {full_s:.2f} s, {full_mb:.0f} MB ({_steps(full)})", flush=True)
        parent.send(("change", args.changed))
        changed = _answer(parent, proc)
        inc_s, inc_mb = timed_process([*cli, "run"], folder)
        inc = latest_summary(folder)
        print(f"  incremental run after {changed:,} members changed: {inc_s:.2f} s,"
              f" {inc_mb:.0f} MB ({_steps(inc)})", flush=True)
        rep_s, rep_mb = timed_process([*cli, "report"], folder)
        print(f"  report: {rep_s:.2f} s, {rep_mb:.0f} MB", flush=True)
    finally:
        if proc.is_alive():
            parent.send(("stop",))
        proc.join(timeout=30)
    return figures(args.people, baseline, (full_s, full_mb, full), (inc_s, inc_mb, inc),
                   changed, (rep_s, rep_mb), dump, download)


def figures(people: int, baseline: float, full, inc, changed: int, report, dump, download
            ) -> list[Figure]:
    """The figures with their targets (the absolute ones only at FULL_SIZE or more)."""
    at_size = people >= FULL_SIZE
    absolute = (lambda s: s) if at_size else (lambda s: None)
    base_name = "mariadb --batch --quick dump + raw member pages"
    base_note = (f"baseline: dump {dump[0]:.2f} s ({dump[1]:.0f} MB),"
                 f" pages {download[0]:.2f} s ({download[1]:.0f} MB)")
    where = "" if at_size else f" (set for {FULL_SIZE:,} people: not checked here)"
    full_s, full_mb, full_summary = full
    inc_s, inc_mb, inc_summary = inc
    in_run = (full_summary.get("durations") or {}).get("report", float("nan"))
    in_inc = (inc_summary.get("durations") or {}).get("report", float("nan"))
    modes = {s: (v or {}).get("mode") for s, v in (inc_summary.get("snapshots") or {}).items()}
    return [
        Figure("run", full_s, full_mb, base_name, baseline, None,
               RUN_MEMORY_MB if at_size else None,
               [base_note, _steps(full_summary), f"target < {RUN_SECONDS:g} s{where}"],
               seconds_target=absolute(RUN_SECONDS)),
        Figure("report step in run", in_run, full_mb, base_name, baseline, None, None,
               [f"incremental run's report step {in_inc:.2f} s",
                f"target ≤ {REPORT_SECONDS:g} s{where}"],
               seconds_target=absolute(REPORT_SECONDS)),
        Figure(f"incremental run ({changed:,} changed)", inc_s, inc_mb, "the full run", full_s,
               INCREMENTAL_RATIO, RUN_MEMORY_MB if at_size else None,
               [_steps(inc_summary), f"snapshot modes: {modes}"]),
        Figure("report", report[0], report[1], base_name, baseline, None,
               RUN_MEMORY_MB if at_size else None, [f"target ≤ {REPORT_SECONDS:g} s{where}"],
               seconds_target=absolute(REPORT_SECONDS)),
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench run")
    parser.add_argument("--people", type=int, default=FULL_SIZE)
    parser.add_argument("--changed", type=float, default=0.01,
                        help="fraction of the members changed before the incremental run")
    parser.add_argument("--connections", type=int, default=5)
    parser.add_argument("--regenerate", action="store_true",
                        help="rebuild the CiviCRM database even if one of this size exists")
    parser.add_argument("--keep", type=Path, help="make the temporary folder under this one")
    args = parser.parse_args(argv)
    if not (shutil.which("mariadb") or shutil.which("mysql")):
        raise SystemExit("bench run needs the mariadb/mysql command-line client (its baseline)")
    from civimc_sandbox.localdb import ensure_server

    server = ensure_server()
    database = f"civimc_bench_run_{args.people}"
    group = None if args.regenerate else existing_group(server, database, args.people)
    if group is None:
        print(f"building {database} ({args.people:,} people; untimed) …", flush=True)
        group = build_civicrm(server, database, args.people)
    print(f"measuring `run` at {args.people:,} people (load average"
          f" {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs) …", flush=True)
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        figs = measure(args, server, database, group, Path(tmp))
    print_figures(args.people, figs)
    return 1 if any(f.missed for f in figs) else 0
