"""`make demo`: the seed page's five people, end to end, in a sandbox that stays up afterwards.

`python -m civimc_sandbox.demo [FOLDER]` (default `data/demo`) loads Wilma, Barney, Fred, Betty
and Pebbles with the seed's dates, plus a generated population covering every rule, reason
code, flag and interest rule (civimc_sandbox.population), into a demo CiviCRM database (written
the way CiviCRM core writes it) and into the Mailchimp emulator; starts the emulator in the
background (its audience kept in FOLDER/emulator-state.json); runs the real CLI (snapshot,
reconcile, report); and prints the five people's outcomes, the counts, the report, and the
line to source and the commands to go on with. FOLDER/env.sh (mode 600) holds the demo's
made-up key and its random passwords; the TOML holds no secret.

The database and its two accounts are named for FOLDER's absolute path (`DemoNames`), so the
demos of two checkouts on one server stay apart. Running the demo again resets that folder's
demo: it stops its emulator and says what it starts afresh.

`--stop` stops the background emulator (database, accounts and files stay; `--start` starts it
again from its saved state); `--drop` also drops the demo database and its accounts
(`make clean`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import secrets
import shlex
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from civimc_audit.config import ENV_CIVICRM_PASSWORD, ENV_CIVICRM_WRITE_PASSWORD, ENV_MAILCHIMP_API_KEY
from civimc_audit.errors import CivimcError
from civimc_sandbox import demo_output
from civimc_sandbox.background import BackgroundEmulator, free_port
from civimc_sandbox.civicrm.fixture import CiviFixture, create_database
from civimc_sandbox.emulator import Emulator
from civimc_sandbox.emulator.persist import save_state
from civimc_sandbox.emulator.state import DEFAULT_API_KEY
from civimc_sandbox.interest_people import load_interest_people
from civimc_sandbox.localdb import Server, ensure_server, running_server
from civimc_sandbox.population import generate, load_people
from civimc_sandbox.seed import SEED, SeedPerson, jan, load_seed, seed_email

__all__ = ["DEMO_API_KEY", "DEMO_LIST_ID", "SEED", "Demo", "DemoNames", "SeedPerson", "jan",
           "load_seed", "main", "seed_email"]

# A made-up key in Mailchimp's format; the demo's emulator accepts only it.
DEMO_API_KEY = DEFAULT_API_KEY
DEMO_LIST_ID = "a1b2c3d4e5"
GENERATED_PEOPLE = 300
DEFAULT_FOLDER = Path("data/demo")


@dataclass(frozen=True)
class DemoNames:
    """The demo database and its accounts, named for one demo folder (user names ≤ 32 chars)."""

    suffix: str

    @classmethod
    def for_folder(cls, folder: Path) -> DemoNames:
        return cls(hashlib.sha1(str(Path(folder).resolve()).encode()).hexdigest()[:6])

    @property
    def database(self) -> str:
        return f"civimc_demo_{self.suffix}"

    @property
    def reader(self) -> str:
        return f"civimc_demo_{self.suffix}_reader"

    @property
    def writer(self) -> str:
        return f"civimc_demo_{self.suffix}_writer"


class Demo:
    """One demo folder: its files, its database and accounts, its background emulator."""

    def __init__(self, folder: Path = DEFAULT_FOLDER):
        self.folder = Path(folder).resolve()
        self.names = DemoNames.for_folder(self.folder)
        self.emulator = BackgroundEmulator(self.folder)
        self.config_path = self.folder / "civimc-audit.toml"
        self.env_path = self.folder / "env.sh"
        self.interests: dict[str, int] = {}  # the demo's [interests], set by `load`

    @property
    def is_default(self) -> bool:
        """The checkout's own demo (data/demo here), the one the make targets handle."""
        return self.folder == DEFAULT_FOLDER.resolve()

    # --- reset ------------------------------------------------------------------------------
    def reset(self, server: Server) -> str | None:
        """Stop this demo's emulator and remove its files; words on what existed, else None."""
        stopped = self.emulator.stop()
        existed = [what for what, there in (
            (f"database {self.names.database} (new passwords in env.sh)",
             self._database_exists(server)),
            ("the audit store (plans, runs)", (self.folder / "audit.duckdb").exists()),
            ("the emulator's audience", self.emulator.state_path.exists()),
        ) if there]
        for path in self.folder.glob("audit.duckdb*"):
            path.unlink()
        for path in (self.emulator.state_path, self.config_path, self.env_path,
                     self.folder / "review.csv"):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.folder / "runs", ignore_errors=True)
        if not existed and stopped is None:
            return None
        first = f"stopped its emulator (pid {stopped})" if stopped else ""
        rest = (", ".join(existed[:-1]) + " and " + existed[-1] if len(existed) > 1
                else "".join(existed))
        rest = f"{rest} start{'s' if len(existed) == 1 else ''} afresh" if existed else ""
        return (f"Resetting the demo in {demo_output.shown(self.folder)}: "
                f"{'; '.join(w for w in (first, rest) if w)}.")

    def _database_exists(self, server: Server) -> bool:
        conn = server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s",
                            (self.names.database,))
                return cur.fetchone() is not None
        finally:
            conn.close()

    # --- set-up -----------------------------------------------------------------------------
    def load(self, server: Server, year: int) -> int:
        """The seed, the interest people (two mapped interests, every interest rule; kept in
        `self.interests` for the config) and the generated crowd (with interests in the same
        two) into a fresh database and the emulator's state file; returns the CiviCRM group
        id."""
        conn = server.connect()
        try:
            create_database(conn, self.names.database)
            fixture = CiviFixture(conn)
            group_id = fixture.group("newsletter", "Newsletter")
            emu = Emulator(api_key=DEMO_API_KEY)
            emu.add_list(list_id=DEMO_LIST_ID, name="Bedrock Newsletter")
            load_seed(fixture, group_id, emu, DEMO_LIST_ID, year)
            self.interests = load_interest_people(fixture, group_id, emu, DEMO_LIST_ID, year)
            # Besides the seed's five: a generated crowd with every rule, reason code and flag,
            # and every interest rule in the same two interests and groups.
            load_people(fixture, group_id, emu, DEMO_LIST_ID,
                        generate(GENERATED_PEOPLE, seed=1, interests=True),
                        interest_groups=self.interests)
        finally:
            conn.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        save_state(emu, self.emulator.state_path)
        return group_id

    def create_accounts(self, server: Server) -> tuple[str, str]:
        """A SELECT-only reader and a writer for the demo database, with new random passwords;
        returns them."""
        reader_pw, writer_pw = secrets.token_hex(12), secrets.token_hex(12)
        db = self.names.database
        conn = server.connect()
        try:
            with conn.cursor() as cur:
                for user, pw in ((self.names.reader, reader_pw), (self.names.writer, writer_pw)):
                    for host in ("%%", "localhost"):  # %% is '%' once the password is in
                        cur.execute(f"CREATE USER IF NOT EXISTS '{user}'@'{host}' "
                                    "IDENTIFIED BY %s", (pw,))
                        cur.execute(f"ALTER USER '{user}'@'{host}' IDENTIFIED BY %s", (pw,))
                for host in ("%", "localhost"):
                    cur.execute(f"GRANT SELECT ON `{db}`.* TO '{self.names.reader}'@'{host}'")
                    cur.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON `{db}`.* "
                                f"TO '{self.names.writer}'@'{host}'")
            conn.commit()
        finally:
            conn.close()
        return reader_pw, writer_pw

    def write_config(self, server: Server, group_id: int, base_url: str) -> None:
        self.config_path.write_text(f"""# civimc-audit demo configuration (written by `make demo`;
# the passwords and the API key are in env.sh beside it, never here)
[civicrm]
host = "{server.host}"
port = {server.port}
database = "{self.names.database}"
user = "{self.names.reader}"
write_user = "{self.names.writer}"
group_id = {group_id}

[mailchimp]
list_id = "{DEMO_LIST_ID}"
base_url = "{base_url}"

[store]
path = "audit.duckdb"
runs_dir = "runs"
""" + self._interests_table(), encoding="utf-8")

    def _interests_table(self) -> str:
        """The demo's [interests]: its two interests and their CiviCRM groups (none before
        `load`, e.g. for a config written from an existing demo)."""
        if not self.interests:
            return ""
        return "\n[interests]\n" + "".join(f'"{i}" = {g}\n' for i, g in self.interests.items())

    def environment(self, reader_pw: str, writer_pw: str) -> dict[str, str]:
        return {"CIVIMC_CONFIG": str(self.config_path), ENV_CIVICRM_PASSWORD: reader_pw,
                ENV_CIVICRM_WRITE_PASSWORD: writer_pw, ENV_MAILCHIMP_API_KEY: DEMO_API_KEY}

    def write_env(self, env: dict[str, str]) -> None:
        """env.sh, readable by its owner only: the variables, and this Python's bin on PATH."""
        lines = ["# civimc-audit demo: `source` this file to use the demo's sandbox",
                 *(f"export {k}={shlex.quote(v)}" for k, v in env.items())]
        bin_dir = Path(sys.executable).parent
        if (bin_dir / "civimc-audit").exists():
            lines.append(f'export PATH={shlex.quote(str(bin_dir))}:"$PATH"')
        fd = os.open(self.env_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(self.env_path, 0o600)

    # --- dropping ---------------------------------------------------------------------------
    def drop(self, server: Server) -> bool:
        """Drop this demo's database and its two accounts (nothing else on the server);
        returns whether the database was there."""
        existed = self._database_exists(server)
        conn = server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{self.names.database}`")
                for user in (self.names.reader, self.names.writer):
                    for host in ("%", "localhost"):
                        cur.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
            conn.commit()
        finally:
            conn.close()
        return existed


def cli_step(command: list[str]) -> tuple[int, str]:
    """Run one civimc-audit command in this process, its output captured (shown on failure)."""
    from civimc_audit.cli import main as cli_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = cli_main(command)
    return code, out.getvalue()


def run_demo(demo: Demo, year: int | None = None) -> int:
    year = year or datetime.now(UTC).year
    server = ensure_server()
    reset = demo.reset(server)
    if reset:
        print(reset)
    print(f"Loading the seed's five people, eight for the interest rules and {GENERATED_PEOPLE} "
          f"generated ones into database "
          f"{demo.names.database} on {server.host}:{server.port} and the Mailchimp emulator …",
          flush=True)
    group_id = demo.load(server, year)
    env = demo.environment(*demo.create_accounts(server))
    port = free_port()
    demo.write_config(server, group_id, demo.emulator.base_url(port))
    demo.write_env(env)
    pid = demo.emulator.start(port, DEMO_LIST_ID, DEMO_API_KEY)
    os.environ.update(env)
    for step in (["snapshot"], ["reconcile"], ["report"]):
        code, output = cli_step(step)
        if code:
            print(f"$ civimc-audit {' '.join(step)}\n{output.rstrip()}", file=sys.stderr)
            return code
    print(demo_output.summary(demo, year, pid))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m civimc_sandbox.demo", description=__doc__.split(
        "\n")[0].strip("`"))
    p.add_argument("folder", nargs="?", type=Path, default=DEFAULT_FOLDER,
                   help="the demo's folder (default: data/demo)")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--stop", action="store_true", help="stop the demo's emulator")
    what.add_argument("--start", action="store_true",
                      help="start the stopped emulator again from its saved audience")
    what.add_argument("--drop", action="store_true",
                      help="stop the emulator and drop the demo database and its accounts")
    args = p.parse_args(argv)
    demo = Demo(args.folder)
    try:
        if args.stop or args.drop:
            pid = demo.emulator.stop()
            print(f"stopped the demo emulator (pid {pid})" if pid else
                  "the demo emulator was not running")
            if args.drop:
                server = running_server()
                if server is None:
                    print("no MariaDB answers: the demo database was not dropped")
                elif demo.drop(server):
                    print(f"dropped database {demo.names.database} and its two accounts")
            return 0
        if args.start:
            pid = demo.emulator.restart(DEMO_API_KEY)
            print(f"the demo emulator serves again (pid {pid}, log {demo.emulator.log_path})")
            return 0
        return run_demo(demo)
    except CivimcError as exc:
        print(f"civimc-audit demo: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
