"""`make demo`: the seed page's five people, end to end on a local MariaDB and the emulator.

Loads Wilma, Barney, Fred, Betty and Pebbles with the seed's dates, plus a generated population
of a few hundred people covering every rule, reason code and flag (civimc_sandbox.population), into
a demo CiviCRM database (written the way CiviCRM core writes it) and into the Mailchimp emulator,
then runs the real CLI:
snapshot → reconcile → report, and prints where the HTML report is.
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from civimc_audit.config import ENV_CIVICRM_PASSWORD, ENV_CIVICRM_WRITE_PASSWORD, ENV_MAILCHIMP_API_KEY
from civimc_sandbox.civicrm.fixture import CiviFixture, create_database
from civimc_sandbox.emulator import Emulator, EmulatorServer
from civimc_sandbox.localdb import Server, ensure_server
from civimc_sandbox.population import generate, load_people

# A made-up key in Mailchimp's format; the emulator accepts only it.
DEMO_API_KEY = "0123456789abcdef0123456789abcdef-us1"
DEMO_LIST_ID = "a1b2c3d4e5"
DEMO_DATABASE = "civimc_demo"
DEMO_READER = "civimc_demo_reader"
DEMO_WRITER = "civimc_demo_writer"
GENERATED_PEOPLE = 300


@dataclass(frozen=True)
class SeedPerson:
    """One row of the seed page's table, as dates on each side."""

    first: str
    mailchimp: tuple[str, int] | None          # (status, day of January)
    civicrm: tuple[tuple[str, int], ...]       # history as (Added|Removed, day); month below
    expected: str


def jan(day: int, year: int, hour: int = 10) -> datetime:
    """A January date; days ≤ 0 fall back into the previous December."""
    if day <= 0:
        return datetime(year - 1, 12, 31 + day, hour, tzinfo=UTC)
    return datetime(year, 1, day, hour, tzinfo=UTC)


SEED = (
    SeedPerson("Wilma", ("subscribed", 1), (("Added", 5),), "stays subscribed"),
    SeedPerson("Barney", ("unsubscribed", 2), (("Added", 1),), "gets removed from CiviCRM group"),
    SeedPerson("Fred", ("subscribed", 3), (("Added", -20), ("Removed", 4)),
               "gets removed from Mailchimp"),
    SeedPerson("Betty", None, (("Added", 4),), "gets added to Mailchimp"),
    SeedPerson("Pebbles", ("subscribed", 1), (), "gets added to CiviCRM"),
)


def seed_email(first: str) -> str:
    return f"{first.lower()}@bedrock.example.org"


def load_seed(fixture: CiviFixture, group_id: int, emu: Emulator, list_id: str,
              year: int) -> dict[str, int]:
    """Write the five seed people to both sides; returns contact ids by first name."""
    ids = {}
    for person in SEED:
        last = "Rubble" if person.first in ("Barney", "Betty") else "Flintstone"
        cid = fixture.contact(person.first, last, email=seed_email(person.first))
        ids[person.first] = cid
        for status, day in person.civicrm:
            if status == "Added":
                fixture.add_to_group(cid, group_id, jan(day, year))
            else:
                fixture.remove_from_group(cid, group_id, jan(day, year))
        if person.mailchimp:
            status, day = person.mailchimp
            emu.add_member(list_id, seed_email(person.first), status=status,
                           last_changed=jan(day, year),
                           merge_fields={"FNAME": person.first, "LNAME": last})
    fixture.commit()
    return ids


def create_users(server: Server, database: str) -> tuple[str, str]:
    """A SELECT-only reader and a writer for the demo database; returns their passwords."""
    reader_pw, writer_pw = secrets.token_hex(12), secrets.token_hex(12)
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            for user, pw in ((DEMO_READER, reader_pw), (DEMO_WRITER, writer_pw)):
                cur.execute(f"CREATE USER IF NOT EXISTS '{user}'@'%%' IDENTIFIED BY %s", (pw,))
                cur.execute(f"ALTER USER '{user}'@'%%' IDENTIFIED BY %s", (pw,))
                cur.execute(f"CREATE USER IF NOT EXISTS '{user}'@'localhost' IDENTIFIED BY %s",
                            (pw,))
                cur.execute(f"ALTER USER '{user}'@'localhost' IDENTIFIED BY %s", (pw,))
            for host in ("%", "localhost"):
                cur.execute(f"GRANT SELECT ON `{database}`.* TO '{DEMO_READER}'@'{host}'")
                cur.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{database}`.* "
                            f"TO '{DEMO_WRITER}'@'{host}'")
        conn.commit()
    finally:
        conn.close()
    return reader_pw, writer_pw


def write_config(path: Path, server: Server, group_id: int, base_url: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""# civimc-audit demo configuration (written by `make demo`)
[civicrm]
host = "{server.host}"
port = {server.port}
database = "{DEMO_DATABASE}"
user = "{DEMO_READER}"
write_user = "{DEMO_WRITER}"
group_id = {group_id}

[mailchimp]
list_id = "{DEMO_LIST_ID}"
base_url = "{base_url}"

[store]
path = "audit.duckdb"
runs_dir = "runs"
""", encoding="utf-8")
    return path


def prepare(folder: Path, year: int | None = None):
    """Load the demo into MariaDB and a started emulator; returns (config path, server, emu)."""
    year = year or datetime.now(UTC).year
    server = ensure_server()
    conn = server.connect()
    create_database(conn, DEMO_DATABASE)
    fixture = CiviFixture(conn)
    group_id = fixture.group("newsletter", "Newsletter")
    emu = Emulator(api_key=DEMO_API_KEY)
    emu.add_list(list_id=DEMO_LIST_ID, name="Bedrock Newsletter")
    load_seed(fixture, group_id, emu, DEMO_LIST_ID, year)
    # Besides the seed's five: a generated crowd with every rule, reason code and flag.
    load_people(fixture, group_id, emu, DEMO_LIST_ID, generate(GENERATED_PEOPLE, seed=1))
    conn.close()
    reader_pw, writer_pw = create_users(server, DEMO_DATABASE)
    os.environ[ENV_CIVICRM_PASSWORD] = reader_pw
    os.environ[ENV_CIVICRM_WRITE_PASSWORD] = writer_pw
    os.environ[ENV_MAILCHIMP_API_KEY] = DEMO_API_KEY
    http = EmulatorServer(emu).start()
    for stale in (folder / "audit.duckdb", folder / "audit.duckdb.wal"):
        stale.unlink(missing_ok=True)
    config = write_config(folder / "civimc-audit.toml", server, group_id, http.base_url)
    return config, http, emu


def main(argv=None) -> int:
    from civimc_audit.cli import main as cli_main

    folder = Path(argv[0] if argv else "data/demo").resolve()
    config, http, _emu = prepare(folder)
    try:
        for command in (["snapshot"], ["reconcile"], ["outcomes"], ["report"]):
            print(f"$ civimc-audit --config {config} {' '.join(command)}", flush=True)
            code = cli_main(["--config", str(config), *command])
            if code:
                return code
    finally:
        http.stop()
    runs = sorted((folder / "runs").iterdir())
    print(f"\nThe audit report is at {runs[-1] / 'audit.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
