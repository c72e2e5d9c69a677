"""Reconciliation: the rules of docs/design.md as numbered SQL files, run in order by DuckDB.

Python only picks the snapshots, sets the variables the SQL reads with `getvariable(...)`, and
records the result; every decision is made in `sql/NN_*.sql`.
"""

from __future__ import annotations

import json
from importlib import resources

from civimc_audit.common.crashpoints import checkpoint
from civimc_audit.common.emails import install_sql_macros
from civimc_audit.common.times import utcnow
from civimc_audit.config import PolicySettings
from civimc_audit.errors import StoreError
from civimc_audit.store import Store, scalar

SQL_PACKAGE = "civimc_audit.reconcile"


def sql_steps() -> list[tuple[str, str]]:
    """The numbered SQL files as (name, text), in order."""
    folder = resources.files(SQL_PACKAGE).joinpath("sql")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(n, folder.joinpath(n).read_text(encoding="utf-8")) for n in names]


def _pick(store: Store, source: str, snapshot_id: int | None):
    snap = store.snapshot(snapshot_id) if snapshot_id else store.latest_snapshot(source)
    if snap is None:
        raise StoreError(f"no complete {source} snapshot in the store: run "
                         f"`civimc-audit snapshot` first")
    if snap.source != source:
        raise StoreError(f"snapshot {snap.id} is a {snap.source} snapshot, not {source}")
    if snap.status != "complete":
        raise StoreError(f"{source} snapshot {snap.id} is {snap.status}"
                         f"{': ' + snap.message if snap.message else ''}; take a new snapshot")
    return snap


def reconcile(store: Store, policy: PolicySettings | None = None, *,
              civicrm_snapshot_id: int | None = None,
              mailchimp_snapshot_id: int | None = None) -> dict:
    """Run the rules over two complete snapshots; returns the stored reconciliation."""
    policy = policy or PolicySettings()
    civi = _pick(store, "civicrm", civicrm_snapshot_id)
    mc = _pick(store, "mailchimp", mailchimp_snapshot_id)
    con = store.con
    with store.transaction():
        rid = scalar(
            con, "INSERT INTO reconciliations (civicrm_snapshot_id, mailchimp_snapshot_id,"
            " created_at, policy) VALUES (?, ?, ?, ?) RETURNING id",
            [civi.id, mc.id, utcnow(), json.dumps(policy.model_dump())])
        _set_variables(con, policy, civi, mc, rid)
        try:
            for _name, text in sql_steps():
                con.execute(text)
        finally:
            _drop_temporaries(con)
        counts = dict(con.execute(
            "SELECT outcome, count(*) FROM outcomes WHERE reconciliation_id = ? GROUP BY 1",
            [rid]).fetchall())
        checkpoint("reconcile_outcomes")
        con.execute("UPDATE reconciliations SET counts = ? WHERE id = ?",
                    [json.dumps(counts), rid])
    return store.reconciliation(rid)


def _set_variables(con, policy: PolicySettings, civi, mc, rid: int | None) -> None:
    """The values the SQL steps read with getvariable(...)."""
    variables = {
        "civicrm_snapshot": civi.id, "mailchimp_snapshot": mc.id,
        "group_id": civi.meta["group_id"], "reconciliation_id": rid,
        "tie_winner": policy.tie_winner,
        "honor_civicrm_consent": bool(policy.honor_civicrm_consent),
        "date_basis": policy.date_basis,
        # The mapped interests' JSON paths (ids are 10 hex digits, checked at config load),
        # a constant for step 10's one json_extract per member.
        "interest_paths": [f'$."{g["interest_id"]}"'
                           for g in civi.meta.get("interest_groups") or []],
    }
    for name, value in variables.items():
        con.execute(f"SET VARIABLE {name} = ?", [value])
    install_sql_macros(con)


#: The steps that choose the rows needing date evidence (through 07b_evidence_needed.sql).
EVIDENCE_STEPS_BEFORE = "08"


def evidence_needed(store: Store, policy: PolicySettings | None = None, *,
                    civicrm_snapshot_id: int, mailchimp_snapshot_id: int) -> list[str]:
    """The member ids whose activity feed the rules need (step 7b; the same under every
    policy), for a pair of complete snapshots; nothing is stored."""
    policy = policy or PolicySettings()
    civi = _pick(store, "civicrm", civicrm_snapshot_id)
    mc = _pick(store, "mailchimp", mailchimp_snapshot_id)
    con = store.con
    _set_variables(con, policy, civi, mc, None)
    try:
        for name, text in sql_steps():
            if name < EVIDENCE_STEPS_BEFORE:
                con.execute(text)
        rows = con.execute("SELECT member_id FROM evidence_needed ORDER BY member_id").fetchall()
    finally:
        _drop_temporaries(con)
    return [r[0] for r in rows]


def _drop_temporaries(con) -> None:
    """Drop the steps' temp views and tables: at a million people they hold gigabytes, and a
    notebook keeps its store connection open."""
    views = con.execute("SELECT view_name FROM duckdb_views() WHERE temporary AND NOT internal"
                        ).fetchall()
    tables = con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()
    for (name,) in views:
        con.execute(f'DROP VIEW IF EXISTS temp.main."{name}"')
    for (name,) in tables:
        con.execute(f'DROP TABLE IF EXISTS temp.main."{name}"')


OUTCOME_COLUMNS = ["person_id", "email", "contact_id", "display_name", "mailchimp_status",
                   "mailchimp_changed", "mailchimp_status_changed", "civicrm_status",
                   "civicrm_changed", "winner", "outcome", "rule", "reason_code", "reason",
                   "flags"]


REPORT_COLUMNS = [*OUTCOME_COLUMNS, "civicrm_history_status", "member_id", "target_email"]


def outcome_frame(store: Store, reconciliation_id: int | None = None,
                  outcome: str | None = None, columns: list[str] | None = None):
    """The outcome rows of a reconciliation as a pandas DataFrame (dates as naive UTC)."""
    rec = store.reconciliation(reconciliation_id)
    cols = columns or OUTCOME_COLUMNS
    sql = f"SELECT {', '.join(cols)} FROM outcomes WHERE reconciliation_id = ?"
    args: list = [rec["id"]]
    if outcome:
        sql += " AND outcome = ?"
        args.append(outcome)
    return con_df(store, sql + " ORDER BY person_id", args)


def con_df(store: Store, sql: str, args=None):
    return store.con.execute(sql, args or []).df()


INTEREST_COLUMNS = ["email", "contact_id", "interest_id", "interest_name", "civicrm_group_id",
                    "mailchimp_interest", "civicrm_status", "civicrm_changed",
                    "mailchimp_changed", "winner", "outcome", "rule", "reason_code", "reason"]


# What an interest row shows of its person, read from the person's outcome row.
PERSON_COLUMNS = ("email", "member_id", "display_name")


def interest_frame(store: Store, reconciliation_id: int | None = None,
                   outcome: str | None = None, columns: list[str] | None = None):
    """The interest rows of a reconciliation (one per person and mapped interest, rules
    I1–I6) as a pandas DataFrame (dates as naive UTC), in person then mapping order."""
    rec = store.reconciliation(reconciliation_id)
    cols = [f"o.{c}" if c in PERSON_COLUMNS else f"i.{c}" for c in columns or INTEREST_COLUMNS]
    sql = (f"SELECT {', '.join(cols)} FROM interest_outcomes i"
           " JOIN outcomes o USING (reconciliation_id, person_id) WHERE i.reconciliation_id = ?")
    args: list = [rec["id"]]
    if outcome:
        sql += " AND i.outcome = ?"
        args.append(outcome)
    return con_df(store, sql + " ORDER BY i.person_id, i.civicrm_group_id", args)


def interest_counts(store: Store, reconciliation_id: int | None = None) -> dict[str, int]:
    """Interest rows per outcome of a reconciliation."""
    rec = store.reconciliation(reconciliation_id)
    return dict(store.con.execute(
        "SELECT outcome, count(*) FROM interest_outcomes WHERE reconciliation_id = ?"
        " GROUP BY 1", [rec["id"]]).fetchall())
