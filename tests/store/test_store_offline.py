"""Issue 20 point 4: the store always reopens offline. The first `run` on a new store is killed
(SIGKILL) after each schema migration and at each moment a step is about to close the store
with its writes still in the write-ahead log; each time the store is then opened, in a fresh
process with the network unreachable (every proxy pointing at a closed port, DuckDB's own
extension repository too), and holds what was committed."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from support.values import TEST_LIST_ID

from civimc_audit.common.crashpoints import DIE_ENV
from civimc_audit.store.database import MIGRATIONS
from civimc_sandbox.demo import load_seed

YEAR = datetime.now(UTC).year - 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != DIE_ENV}
    dead = f"http://127.0.0.1:{closed_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        env[name] = dead
    env["NO_PROXY"] = env["no_proxy"] = ""
    return env


REOPEN = """
import sys
import duckdb
from civimc_audit.store import Store
# DuckDB's extension repository unreachable as well (a plain connection's setting, so any
# download the store might start fails instead of reaching the internet).
duckdb.connect(config={"custom_extension_repository": sys.argv[2]}).close()
with Store(sys.argv[1]) as store:
    print(store.con.execute("SELECT count(*) FROM snapshots").fetchone()[0])
"""


@pytest.fixture
def seeded(civi_db, emulator, make_config):
    load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)
    return make_config()


def kill_first_run(config, point: str) -> int:
    """Run `run` on a new store, killed at `point`; returns its exit status."""
    for leftover in config.parent.glob("audit.duckdb*"):
        leftover.unlink()
    env = {**os.environ, DIE_ENV: point}
    proc = subprocess.run([sys.executable, "-m", "civimc_audit.cli", "--config", str(config),
                           "run"], env=env, capture_output=True, text=True, timeout=300)
    return proc.returncode


def reopen_offline(config) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", REOPEN, str(config.parent / "audit.duckdb"),
                           f"http://127.0.0.1:{closed_port()}"], env=offline_env(),
                          capture_output=True, text=True, timeout=120)


def test_a_first_run_killed_at_any_step_leaves_a_store_that_opens_offline(seeded):
    points = [f"store_migrated:{n}" for n in range(1, len(MIGRATIONS) + 1)]
    points += [f"store_close:{n}" for n in range(1, 4)]  # the snapshots and the reconcile
    wal_left = 0
    for point in points:
        assert kill_first_run(seeded, point) == -9, f"run was not killed at {point}"
        wal_left += (seeded.parent / "audit.duckdb.wal").exists()
        got = reopen_offline(seeded)
        assert got.returncode == 0, f"killed at {point}: {got.stderr.strip()[-800:]}"
        assert int(got.stdout.strip()) >= 0
        assert not (seeded.parent / "audit.duckdb.wal").exists()  # replayed into the file
    assert wal_left >= len(points) - 1  # the kills did leave logs to replay
