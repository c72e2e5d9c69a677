"""A MariaDB for the demo, the tests and the benchmarks, found or started on this machine.

Order of preference (docs/design.md "Local services"):
1. `CIVIMC_TEST_MYSQL=host:port[:user[:password]]` when set;
2. a server answering at 127.0.0.1:3306 as root with no password;
3. a private instance in `data/.mariadb/` started here (and reused by later calls);
4. where no server binary exists, `apt-get install mariadb-server` when running as root with apt;
   otherwise one clear line saying how to install it.

`python -m civimc_sandbox.localdb` ensures a server and prints its connection parameters as JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import pymysql

from civimc_audit.errors import ConfigError

PRIVATE_DIR = Path(os.environ.get("CIVIMC_MARIADB_DIR", "data/.mariadb"))


@dataclass(frozen=True)
class Server:
    """How to reach a MariaDB server as an administrator."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""

    def connect(self, database: str | None = None, **kwargs) -> pymysql.connections.Connection:
        return pymysql.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, database=database, charset="utf8mb4",
                               init_command="SET time_zone = '+00:00'", **kwargs)


def _answers(server: Server) -> bool:
    try:
        server.connect(connect_timeout=3).close()
        return True
    except pymysql.err.MySQLError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _binary(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or next(
            (str(p) for p in (Path("/usr/sbin") / name, Path("/usr/bin") / name) if p.exists()), None)
        if found:
            return found
    return None


def _install_mariadb() -> None:
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ConfigError("no MariaDB server found: install one (e.g. `sudo apt-get install "
                          "mariadb-server`) or set CIVIMC_TEST_MYSQL=host:port:user:password")
    print("installing mariadb-server with apt-get …", file=sys.stderr)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "mariadb-server"], check=True, env=env)


def _start_private(base: Path) -> Server:
    base = base.resolve()
    state = base / "server.json"
    if state.exists():
        server = Server(**json.loads(state.read_text()))
        if _answers(server):
            return server
    mariadbd = _binary("mariadbd", "mysqld")
    if not mariadbd:
        _install_mariadb()
        mariadbd = _binary("mariadbd", "mysqld")
    install_db = _binary("mariadb-install-db", "mysql_install_db")
    datadir = base / "datadir"
    base.mkdir(parents=True, exist_ok=True)
    user_args = ["--user=root"] if os.geteuid() == 0 else []
    if not (datadir / "mysql").exists():
        subprocess.run([install_db, "--no-defaults", f"--datadir={datadir}",
                        "--auth-root-authentication-method=normal", "--skip-test-db",
                        *user_args], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    port = _free_port()
    log = open(base / "mariadbd.log", "ab")  # noqa: SIM115 - handed to the daemon
    subprocess.Popen(
        [mariadbd, "--no-defaults", f"--datadir={datadir}", f"--port={port}",
         "--bind-address=127.0.0.1", f"--socket={base / 'mysqld.sock'}",
         f"--pid-file={base / 'mysqld.pid'}", "--innodb-buffer-pool-size=512M",
         "--max-connections=500", *user_args],
        stdout=log, stderr=log, start_new_session=True)
    server = Server(port=port)
    for _ in range(300):
        if _answers(server):
            state.write_text(json.dumps(asdict(server)))
            return server
        time.sleep(0.1)
    raise ConfigError(f"a private MariaDB did not start; see {base / 'mariadbd.log'}")


def running_server(private_dir: Path | None = None) -> Server | None:
    """The server `ensure_server` would use, if one answers now; never starts or installs one."""
    spec = os.environ.get("CIVIMC_TEST_MYSQL")
    if spec:
        host, port, *rest = spec.split(":")
        candidates = [Server(host, int(port), *(rest[:2]))]
    else:
        candidates = [Server()]
        state = (private_dir or PRIVATE_DIR).resolve() / "server.json"
        if state.exists():
            candidates.append(Server(**json.loads(state.read_text())))
    return next((s for s in candidates if _answers(s)), None)


def ensure_server(private_dir: Path | None = None) -> Server:
    """A reachable MariaDB server with administrator rights (see the module docstring)."""
    spec = os.environ.get("CIVIMC_TEST_MYSQL")
    if spec:
        host, port, *rest = spec.split(":")
        server = Server(host, int(port), *(rest[:2]))
        if not _answers(server):
            raise ConfigError(f"CIVIMC_TEST_MYSQL={host}:{port} does not answer")
        return server
    default = Server()
    if _answers(default):
        return default
    return _start_private(private_dir or PRIVATE_DIR)


def main() -> None:
    try:
        print(json.dumps(asdict(ensure_server())))
    except ConfigError as exc:
        print(f"civimc-audit: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
