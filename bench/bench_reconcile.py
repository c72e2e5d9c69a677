"""Reconcile a million people, next to a plain DuckDB join of the same two tables on email.

The snapshot tables are written straight into a DuckDB store (population.write_store: the
generated archetypes, repeated inside DuckDB), since this measures the reconciliation only.
Baseline: a full outer join of the Mailchimp members and the CiviCRM emails on the normalised
address, written into the store as the outcomes are (a second line compares with the same join
kept in memory, for information). All are timed in the same run, taking turns, best of
`BENCH_REPEAT` (default 3). `BENCH_PEOPLE` sets the size (default 1,000,000).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from civimc_audit.config import PolicySettings
from civimc_audit.reconcile import reconcile
from civimc_audit.store import Store
from civimc_sandbox.population import generate, write_store

BASE_PEOPLE = 10_000

# The same two tables joined on the normalised address, every column of both kept, written
# into the store as the outcomes are (in a transaction, on disk).
BASELINE_SQL = """
CREATE OR REPLACE TABLE bench_baseline AS
SELECT m.id AS member_id, m.email_address, m.status, m.last_changed, m.merge_fields,
       e.id AS email_id, e.contact_id, e.email, e.is_primary, e.is_bulkmail, e.on_hold
FROM (SELECT * FROM mailchimp_member WHERE snapshot_id = $mc) m
FULL OUTER JOIN (SELECT * FROM civicrm_email WHERE snapshot_id = $civi) e
  ON lower(trim(m.email_address)) = lower(trim(e.email))
"""


def _timed(fn) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of one call; CPU time is the
    steadier figure on a machine shared with other work."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def _interleaved(fns: dict, repeat: int) -> dict[str, tuple[float, float]]:
    """Best wall-clock and best CPU time of each function, the runs taking turns so that load
    from elsewhere falls on all of them alike."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            runs[name].append(_timed(fn))
    return {name: (min(w for w, _ in r), min(c for _, c in r)) for name, r in runs.items()}


def run(argv: list[str]) -> list[dict]:
    """Reconcile BENCH_PEOPLE people (default 1,000,000) against a same-run baseline join."""
    people = int(os.environ.get("BENCH_PEOPLE", 1_000_000))
    repeat = int(os.environ.get("BENCH_REPEAT", 3))
    base = generate(min(BASE_PEOPLE, people), seed=1)
    copies = max(1, round(people / base.people))
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.duckdb") as store:
        start = time.perf_counter()
        civi, mc = write_store(store, base, copies=copies)
        load_seconds = time.perf_counter() - start
        counts = store.snapshot(civi).row_counts | store.snapshot(mc).row_counts

        def baseline():
            with store.transaction():
                store.con.execute(BASELINE_SQL, {"mc": mc, "civi": civi})

        def baseline_in_memory():
            store.con.execute(BASELINE_SQL.replace("TABLE", "TEMP TABLE", 1),
                              {"mc": mc, "civi": civi})

        rec: dict = {}

        def run():
            rec.update(reconcile(store, PolicySettings(), civicrm_snapshot_id=civi,
                                 mailchimp_snapshot_id=mc))

        best = _interleaved({"baseline": baseline, "memory": baseline_in_memory,
                             "reconcile": run}, repeat)
        baseline_s, baseline_cpu = best["baseline"]
        memory_s, memory_cpu = best["memory"]
        reconcile_s, reconcile_cpu = best["reconcile"]
    rows = sum(rec["counts"].values())
    expected = {k: v * copies for k, v in base.expected_counts().items()}
    check = "matches" if rec["counts"] == expected else f"DIFFERS from {expected}"
    return [{
        "name": f"reconcile {rows:,} people (outcomes written to the store)",
        "seconds": reconcile_s,
        "baseline": "DuckDB full join of the same members and emails on the address",
        "baseline_seconds": baseline_s,
        "cpu_seconds": reconcile_cpu,
        "baseline_cpu_seconds": baseline_cpu,
        "target": 3,
        "notes": [(f"{counts['mailchimp_member']:,} members, {counts['civicrm_contact']:,} contacts,"
                 f" {counts['civicrm_email']:,} emails, {counts['civicrm_subscription_history']:,}"
                 f" history rows; written in {load_seconds:.1f} s; best of {repeat};"
                 f" outcome counts {check} the population's expectation")],
    }, {
        "name": f"reconcile {rows:,} people vs an in-memory join (no target)",
        "seconds": reconcile_s,
        "baseline": "the same join into a TEMP table (nothing written to disk)",
        "baseline_seconds": memory_s,
        "cpu_seconds": reconcile_cpu,
        "baseline_cpu_seconds": memory_cpu,
    }]
