"""Reconcile a million people with three mapped interests, next to the same reconcile without
interests, in the same run on the same store (DESIGN "Interest groups"; target: at most 1.5×).

The snapshot tables are written as bench_reconcile writes them (population.write_store); then
every member gets interests for three interests (each true for about half of them, with no
entry for every seventh member, as if an interest were mapped after they joined), the
audience's catalogue holds the three, and each mapped CiviCRM group gets a group_contact row
and a history row for about two contacts in three (dates spread over a year, so both sides win
some). "Without" is the same store with the mapping taken out of the CiviCRM snapshot's meta
(so the rules produce no interest rows; the extra group rows are filtered out by group id as
every other group's are). Both are timed taking turns, best of `BENCH_REPEAT` (default 3).
`BENCH_PEOPLE` sets the size (default 1,000,000).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from bench.bench_reconcile import BASE_PEOPLE, _interleaved
from civimc_audit.config import PolicySettings
from civimc_audit.reconcile import reconcile
from civimc_audit.store import Store
from civimc_sandbox.population import generate, write_store

INTERESTS = {"9f8e7d6c5b": 101, "1a2b3c4d5e": 102, "0a0b0c0d0e": 103}

# Each member's interests: an entry per interest (true for about half) except every seventh
# member, who has none.
MEMBER_INTERESTS_SQL = """
UPDATE mailchimp_member SET interests = CASE WHEN hash(id) % 7 = 0 THEN '{}' ELSE
    json_object('9f8e7d6c5b', hash(id || 'a') % 2 = 0, '1a2b3c4d5e', hash(id || 'b') % 2 = 0,
                '0a0b0c0d0e', hash(id || 'c') % 2 = 0)::VARCHAR END
WHERE snapshot_id = $mc
"""
GROUP_ROWS_SQL = """
INSERT INTO civicrm_group_contact (snapshot_id, id, group_id, contact_id, status)
SELECT $civi, row_number() OVER () + $base, g, id,
       CASE WHEN hash(id, g) % 2 = 0 THEN 'Added' ELSE 'Removed' END
FROM civicrm_contact, (SELECT unnest([101, 102, 103]) AS g)
WHERE snapshot_id = $civi AND hash(id, g, 'x') % 3 <> 0;
INSERT INTO civicrm_subscription_history (snapshot_id, id, contact_id, group_id, date, method,
                                          status)
SELECT $civi, id + $base, contact_id, group_id,
       TIMESTAMP '2025-01-01' + to_seconds(CAST(hash(id) % 31536000 AS BIGINT)), 'Admin', status
FROM civicrm_group_contact WHERE snapshot_id = $civi AND group_id IN (101, 102, 103);
"""


def _add_interests(store: Store, civi: int, mc: int) -> dict:
    con = store.con
    base = con.execute("SELECT max(id) FROM civicrm_group_contact").fetchone()[0] or 0
    hbase = con.execute("SELECT max(id) FROM civicrm_subscription_history").fetchone()[0] or 0
    with store.transaction():
        con.execute(MEMBER_INTERESTS_SQL, {"mc": mc})
        for sql in GROUP_ROWS_SQL.split(";")[:2]:
            con.execute(sql, {"civi": civi, "base": max(base, hbase)})
        for i, (iid, _) in enumerate(INTERESTS.items()):
            con.execute("INSERT INTO mailchimp_interest VALUES (?, 'c0c0c0c0c0', 'Topics', ?, ?)",
                        [mc, iid, f"Interest {i + 1}"])
    meta = store.snapshot(civi).meta
    return {**meta, "interest_groups": [{"interest_id": i, "group_id": g, "title": f"Group {g}"}
                                        for i, g in INTERESTS.items()]}


def run(argv: list[str]) -> list[dict]:
    """Reconcile BENCH_PEOPLE people with and without three mapped interests."""
    people = int(os.environ.get("BENCH_PEOPLE", 1_000_000))
    repeat = int(os.environ.get("BENCH_REPEAT", 3))
    base = generate(min(BASE_PEOPLE, people), seed=1)
    copies = max(1, round(people / base.people))
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "bench.duckdb") as store:
        civi, mc = write_store(store, base, copies=copies)
        start = time.perf_counter()
        with_meta = _add_interests(store, civi, mc)
        without_meta = {k: v for k, v in with_meta.items() if k != "interest_groups"}
        add_seconds = time.perf_counter() - start
        recs: dict = {}

        def reconcile_with(meta: dict, key: str):
            def go():
                store.con.execute("UPDATE snapshots SET meta = ? WHERE id = ?",
                                  [json.dumps(meta), civi])
                recs[key] = reconcile(store, PolicySettings(), civicrm_snapshot_id=civi,
                                      mailchimp_snapshot_id=mc)
            return go

        best = _interleaved({"without": reconcile_with(without_meta, "without"),
                             "with": reconcile_with(with_meta, "with")}, repeat)
        interest_rows = store.con.execute(
            "SELECT count(*), count(*) FILTER (WHERE outcome <> 'no_change')"
            " FROM interest_outcomes WHERE reconciliation_id = ?",
            [recs["with"]["id"]]).fetchone()
        same = recs["with"]["counts"] == recs["without"]["counts"]
    people_rows = sum(recs["with"]["counts"].values())
    return [{
        "name": f"reconcile {people_rows:,} people with 3 mapped interests",
        "seconds": best["with"][0],
        "baseline": "the same reconcile without interests",
        "baseline_seconds": best["without"][0],
        "cpu_seconds": best["with"][1],
        "baseline_cpu_seconds": best["without"][1],
        "target": 1.5,
        "notes": [f"{interest_rows[0]:,} interest rows, {interest_rows[1]:,} of them changes; "
                  f"interest data added in {add_seconds:.1f} s; best of {repeat}; subscription "
                  f"outcomes {'identical' if same else 'DIFFER'} with and without interests"],
    }]
