"""Review decisions on a plan: per item, by filter, through a CSV, and freezing.

Decisions are appended (never updated) with who, when, how and an optional note; an item's
current decision is its latest one, and withdrawing one appends an `undecided` decision. A
frozen plan refuses every further decision. Freezing hashes the plan, its snapshots' registry
rows and the approved items' whole rows (sha256, computed in the store), so apply can prove
that what it sends, and what it checks against, is exactly what was approved.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Iterable
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa

from civimc_audit.changes.plan import (
    APPROVED_ITEMS_SQL,
    ITEMS_SQL,
    Plan,
    get_plan,
    items_frame,
)
from civimc_audit.common.crashpoints import checkpoint
from civimc_audit.common.csvcells import defuse_sql, restore_frame
from civimc_audit.common.files import make_private
from civimc_audit.common.times import iso_utc, utcnow
from civimc_audit.errors import UsageError
from civimc_audit.store import Store
from civimc_audit.store.export import CSV_COPY_OPTIONS
from civimc_audit.store.frames import insert_frame, query_frame

DECISIONS = ("approved", "rejected")
_DECISION_WORDS = {"approve": "approved", "approved": "approved", "yes": "approved",
                   "y": "approved", "reject": "rejected", "rejected": "rejected", "no": "rejected",
                   "n": "rejected", "": None, "undecided": None}

# What a reviewer sees and edits; the columns after `note` are there to read, and are checked
# on import so an edited payload (or a CSV from another plan) is refused.
CSV_COLUMNS = ["plan_id", "plan_token", "item_id", "decision", "note", "target", "action",
               "outcome", "rule", "reason_code", "flags", "email", "contact_id", "display_name",
               "mailchimp_status", "mailchimp_changed", "civicrm_status", "civicrm_changed",
               "reason", "payload", "reviewer", "decided_at"]
CHECKED_COLUMNS = ["target", "action", "email", "contact_id", "payload"]
# Shown (before `outcome`) when the plan has interest items.
INTEREST_CSV_COLUMNS = ["interest_id", "interest_name", "civicrm_group_id"]


DECISION_COLUMNS = ["plan_id", "item_id", "decision", "reviewer", "decided_at", "note", "via"]


def _open_plan(store: Store, plan_id: int | None) -> Plan:
    plan = get_plan(store, plan_id)
    if plan.frozen:
        raise UsageError(f"plan {plan.id} is frozen (sha256 {(plan.frozen_hash or '')[:12]}…) and "
                         "cannot change; build a new plan with `civimc-audit plan`")
    return plan


def _reviewer(name: str | None, via: str = "cli") -> str:
    name = (name or "").strip()
    if not name:
        raise UsageError("a reviewer name is needed to record decisions ("
                         + ("type your name in the Reviewer box" if via == "notebook"
                            else "--reviewer NAME") + ")")
    return name


def decide(store: Store, plan_id: int | None, item_ids: Iterable[int], decision: str, reviewer: str,
           *, note: str | None = None, via: str = "notebook") -> int:
    """Record one decision for each of `item_ids`; returns how many were recorded."""
    if decision not in DECISIONS:
        raise UsageError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    reviewer = _reviewer(reviewer, via)
    plan = _open_plan(store, plan_id)
    ids = sorted({int(i) for i in item_ids})
    if not ids:
        return 0
    known = {r[0] for r in store.con.execute(
        "SELECT item_id FROM plan_items WHERE plan_id = ?", [plan.id]).fetchall()}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise UsageError(f"plan {plan.id} has no item(s) {', '.join(map(str, unknown[:10]))}")
    now = utcnow()
    frame = pd.DataFrame({"item_id": ids})
    with store.transaction() as con:
        insert_frame(con, "decisions", frame, DECISION_COLUMNS, select="?, item_id, ?, ?, ?, ?, ?",
                     params=[plan.id, decision, reviewer, now, note or None, via])
    return len(ids)


def filter_items(frame: pd.DataFrame, *, outcome=None, rule=None, reason=None, flag=None,
                 target=None, decided_as=None, since=None, until=None, text: str | None = None,
                 interest=None) -> pd.DataFrame:
    """The rows of an items frame matching every given filter.

    Each of outcome/rule/reason/flag/target/decided_as/interest is one value or a collection (any
    of them); `interest` is a Mailchimp interest id or name (its items only; "none" for the
    subscription group's items); since/until bound the later change date; `text` matches name,
    email or reason.
    """
    mask = pd.Series(True, index=frame.index)

    def among(col, values):
        values = [values] if isinstance(values, str) else list(values)
        return frame[col].isin(values)

    if interest:
        mask &= _interest_mask(frame, interest)

    for col, value in (("outcome", outcome), ("rule", rule), ("reason_code", reason),
                       ("target", target), ("decision", decided_as)):
        if value:
            mask &= among(col, value)
    if flag:
        flags = [flag] if isinstance(flag, str) else list(flag)
        words = frame["flags"].fillna("").str.split()
        mask &= words.map(lambda fs: any(f in fs for f in flags))
    if since is not None:
        mask &= frame["changed"] >= pd.Timestamp(since)
    if until is not None:
        mask &= frame["changed"] <= pd.Timestamp(until)
    if text:
        needle = text.strip().lower()
        hay = (frame["display_name"].fillna("") + " " + frame["email"].fillna("") + " "
               + frame["reason"].fillna("")).str.lower()
        mask &= hay.str.contains(needle, regex=False)
    return frame[mask]


def _interest_mask(frame: pd.DataFrame, interest) -> pd.Series:
    wanted = [interest] if isinstance(interest, str) else list(interest)
    keys = {str(w).strip().casefold() for w in wanted}
    ids = frame["interest_id"].fillna("").astype(str).str.casefold()
    names = frame["interest_name"].fillna("").astype(str).str.casefold()
    mask = ids.isin(keys) | (names.isin(keys) & (names != ""))
    if "none" in keys:
        mask |= frame["interest_id"].isna()
    return mask


def decide_matching(store: Store, plan_id: int | None, decision: str, reviewer: str, *,
                    everything: bool = False, note: str | None = None, via: str = "rule",
                    **filters) -> int:
    """Decide every item matching `filters` (see filter_items); `everything` for all items."""
    plan = _open_plan(store, plan_id)
    if not everything and not any(filters.values()):
        raise UsageError("say which items: --all, or filters such as --outcome CODE")
    if everything:
        return _decide_all(store, plan, decision, reviewer, note=note, via=via)
    frame = items_frame(store, plan.id)
    chosen = filter_items(frame, **filters)
    return decide(store, plan.id, chosen["item_id"].tolist(), decision, reviewer, note=note,
                  via=via)


def _decide_all(store: Store, plan: Plan, decision: str, reviewer: str, *, note: str | None,
                via: str) -> int:
    """decide() for every item of the plan, in one INSERT … SELECT (issue 18: the items are
    not read into Python)."""
    if decision not in DECISIONS:
        raise UsageError(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    reviewer = _reviewer(reviewer, via)
    with store.transaction() as con:
        row = con.execute(
            f"INSERT INTO decisions ({', '.join(DECISION_COLUMNS)})"
            " SELECT plan_id, item_id, ?, ?, ?, ?, ? FROM plan_items WHERE plan_id = ?"
            " ORDER BY item_id",
            [decision, reviewer, utcnow(), note or None, via, plan.id]).fetchone()
    return int(row[0]) if row else 0


# CSV --------------------------------------------------------------------------------------------
def _csv_frame(store: Store, plan: Plan) -> pd.DataFrame:
    items = items_frame(store, plan.id)
    out = items.assign(plan_id=plan.id, plan_token=plan.token)
    columns = CSV_COLUMNS
    if out["interest_id"].notna().any():  # (a plan without interest items keeps its columns)
        at = CSV_COLUMNS.index("outcome")
        columns = [*CSV_COLUMNS[:at], *INTEREST_CSV_COLUMNS, *CSV_COLUMNS[at:]]
        out["civicrm_group_id"] = out["civicrm_group_id"].map(
            lambda v: "" if pd.isna(v) else str(int(v)))
    out["decision"] = out["decision"].replace("undecided", "")
    for col in ("mailchimp_changed", "civicrm_changed", "decided_at"):
        out[col] = out[col].map(lambda v: "" if pd.isna(v) else iso_utc(v))
    out["contact_id"] = out["contact_id"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    return out[columns].fillna("")


def export_csv(store: Store, plan_id: int | None, path: str | Path) -> int:
    """Write the plan's items (removals and flagged first) to a CSV a spreadsheet can edit;
    cells that would run as formulas get a leading apostrophe (removed again on import)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")
    plan = get_plan(store, plan_id)
    tmp = path.with_name(path.name + ".tmp")
    quoted = str(tmp).replace("'", "''")
    try:
        row = store.con.execute(
            f"COPY ({_csv_sql(plan, _csv_columns(store, plan))}) TO '{quoted}'"
            f" ({CSV_COPY_OPTIONS})").fetchone()
        make_private(tmp)
        tmp.replace(path)
    except (OSError, duckdb.IOException) as exc:
        tmp.unlink(missing_ok=True)
        raise UsageError(f"cannot write {path}: {getattr(exc, 'strerror', None) or exc}"
                         ) from None
    return int(row[0]) if row else 0


_CSV_DATES = ("mailchimp_changed", "civicrm_changed", "decided_at")


def _csv_columns(store: Store, plan: Plan) -> list[str]:
    """The review CSV's columns: with the interest columns (before `outcome`) only when the
    plan has interest items, so a plan without them keeps its columns."""
    row = store.con.execute("SELECT count(*) FROM plan_items WHERE plan_id = ? AND"
                            " interest_id IS NOT NULL", [plan.id]).fetchone()
    if not row or not row[0]:
        return CSV_COLUMNS
    at = CSV_COLUMNS.index("outcome")
    return [*CSV_COLUMNS[:at], *INTEREST_CSV_COLUMNS, *CSV_COLUMNS[at:]]


def _csv_sql(plan: Plan, columns: list[str] = CSV_COLUMNS) -> str:
    """The SELECT whose rows DuckDB writes as the review CSV: the same text as
    frame_csv(_csv_frame(…)) (tests/changes/test_review_export_copy.py compares them), every
    cell but the ids as text, defused in SQL, blanks for none; no row passes through Python."""
    items = ITEMS_SQL.replace("$1", str(int(plan.id)))  # COPY takes no prepared parameters
    token = plan.token.replace("'", "''")
    inner = []
    for col in columns:
        if col == "plan_id":
            inner.append(f"{int(plan.id)} AS plan_id")
        elif col == "plan_token":
            inner.append(f"'{token}' AS plan_token")
        elif col == "item_id":
            inner.append("item_id")
        elif col == "decision":
            inner.append("nullif(decision, 'undecided') AS decision")
        elif col in _CSV_DATES:
            inner.append(f"strftime({col}, '%Y-%m-%dT%H:%M:%SZ') AS {col}")
        else:
            inner.append(f"CAST({col} AS VARCHAR) AS {col}")
    outer = ", ".join(col if col in ("plan_id", "item_id")
                      else f"nullif({defuse_sql(col)}, '') AS {col}" for col in columns)
    return (f"SELECT {outer} FROM (SELECT {', '.join(inner)}, priority AS _priority"
            f" FROM ({items})) ORDER BY _priority, item_id")


def import_csv(store: Store, path: str | Path, reviewer: str, plan_id: int | None = None) -> dict:
    """Record the decisions of an edited CSV; returns counts per decision: approved, rejected,
    undecided (the rows left blank or `undecided`, each now undecided in the store) and
    withdrawn (how many of those had an approval or rejection, now withdrawn: recorded as an
    `undecided` decision with the reviewer and the time).

    All or nothing: a CSV from another plan, unknown item ids, repeated ids, edited payloads or
    unreadable decisions are refused with the first few problems named, and nothing is recorded.
    """
    reviewer = _reviewer(reviewer)
    path = Path(path)
    rows = _read_decisions_csv(path)
    plan = _open_plan(store, _csv_plan_id(rows, path, plan_id))
    if rows.empty:
        return {"approved": 0, "rejected": 0, "undecided": 0, "withdrawn": 0}
    if set(rows["plan_token"]) != {plan.token} or set(rows["plan_id"]) != {str(plan.id)}:
        raise UsageError(f"{path} comes from another plan (or another store), not plan "
                         f"{plan.id}; export plan {plan.id} with `civimc-audit review --export`")
    chosen, undecided, problems = _decisions_of(rows, _csv_frame(store, plan).set_index("item_id"))
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise UsageError(f"{path} refused, nothing recorded: {'; '.join(problems[:5])}{more}")
    _record_decisions(store, plan, reviewer, chosen)
    return {"approved": len(chosen["approved"]), "rejected": len(chosen["rejected"]),
            "undecided": undecided, "withdrawn": len(chosen["undecided"])}


def _read_decisions_csv(path: Path) -> pd.DataFrame:
    """The CSV's rows as text (formula guards removed), refused unless it is an export's."""
    try:
        rows = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read decisions CSV {path}: {exc}") from None
    rows = restore_frame(rows)
    missing = [c for c in ("plan_id", "plan_token", "item_id", "decision", *CHECKED_COLUMNS)
               if c not in rows.columns]
    if missing:
        raise UsageError(f"{path} is not a decisions CSV from `review --export` (missing "
                         f"column(s) {', '.join(missing)})")
    if len(set(rows["plan_token"])) > 1 or len(set(rows["plan_id"])) > 1:
        raise UsageError(f"{path} mixes rows of several plans; export one plan's CSV again")
    return rows


def _csv_plan_id(rows: pd.DataFrame, path: Path, plan_id: int | None) -> int | None:
    """The plan to record into: the one asked for, else the one the CSV names."""
    csv_plan = next(iter(set(rows["plan_id"])), None)
    if plan_id is not None or not csv_plan:
        return plan_id
    if not csv_plan.isdigit():
        raise UsageError(f"{path}: plan_id {csv_plan!r} is not a plan id")
    return int(csv_plan)


def _decisions_of(rows: pd.DataFrame, current: pd.DataFrame) -> tuple[dict, int, list[str]]:
    """({"approved": [(item, note)], "rejected": [...], "undecided": [...]}, undecided count,
    problems) of the CSV's rows checked against the plan's items (`current`, indexed by item
    id). A blank or `undecided` row withdraws the item's earlier approval or rejection (listed
    under "undecided", to be recorded); one that was undecided already records nothing."""
    problems: list[str] = []
    chosen: dict[str, list] = {"approved": [], "rejected": [], "undecided": []}
    seen: set[int] = set()
    undecided = 0
    for n, row in enumerate(rows.to_dict("records"), start=2):
        item_id, decision, problem = _row_decision(n, row, current, seen)
        note = (row.get("note") or "").strip() or None
        if not problem:
            problem = _decided_since_export(n, row, item_id, decision, current)
        if problem:
            problems.append(problem)
        elif decision is None:
            undecided += 1
            if current.loc[item_id, "decision"] in DECISIONS:
                chosen["undecided"].append((item_id, note))
        else:
            chosen[decision].append((item_id, note))
    return chosen, undecided, problems


def _decided_since_export(n: int, row: dict, item_id: int | None, decision: str | None,
                          current: pd.DataFrame) -> str | None:
    """A problem when line `n` would change an item whose decision someone recorded after this
    CSV was exported (its decided_at differs): the file is out of date for that item, and
    importing it would silently overwrite a later approval or rejection."""
    stored = current.loc[item_id]
    now = stored["decision"] or None
    if (decision or None) == now or str(row["decided_at"]).strip() == str(stored["decided_at"]):
        return None
    by = f" by {stored['reviewer']}" if stored["reviewer"] else ""
    return (f"line {n}: item {item_id} was decided again since this CSV was exported "
            f"({now or 'undecided'}{by} at {stored['decided_at']}); export again")


def _row_decision(n: int, row: dict, current: pd.DataFrame, seen: set[int]
                  ) -> tuple[int | None, str | None, str | None]:
    """(item id, decision or None for blank, problem) of CSV line `n`; marks the id seen."""
    raw_id = row["item_id"].strip()
    if not raw_id.isdigit() or int(raw_id) not in current.index:
        return None, None, f"line {n}: unknown item id {raw_id!r}"
    item_id = int(raw_id)
    if item_id in seen:
        return item_id, None, f"line {n}: item {item_id} appears twice"
    seen.add(item_id)
    stored = current.loc[item_id]
    edited = [c for c in CHECKED_COLUMNS if str(row[c]).strip() != str(stored[c]).strip()]
    if edited:
        return item_id, None, (f"line {n}: item {item_id} has edited {', '.join(edited)} "
                               "(only decision and note may change)")
    word = row["decision"].strip().lower()
    if word not in _DECISION_WORDS:
        return item_id, None, (f"line {n}: decision {row['decision']!r} is not "
                               "approve/reject/blank")
    return item_id, _DECISION_WORDS[word], None


def _record_decisions(store: Store, plan: Plan, reviewer: str, chosen: dict) -> None:
    records = [{"item_id": i, "decision": d, "note": note}
               for d, pairs in chosen.items() for i, note in pairs]
    if not records:
        return
    frame = pd.DataFrame(records, columns=["item_id", "decision", "note"])
    with store.transaction() as con:
        insert_frame(con, "decisions", frame, DECISION_COLUMNS,
                     select="?, item_id, decision, ?, ?, note, 'csv'",
                     params=[plan.id, reviewer, utcnow()])


# freezing ---------------------------------------------------------------------------------------
def approved_items(store: Store, plan_id: int) -> pd.DataFrame:
    """The plan's approved items (items_frame's columns) in item order, chosen and ordered in
    the store: filtering and sorting every item in pandas copied the frame twice."""
    return query_frame(store.con, APPROVED_ITEMS_SQL, [plan_id])


def approved_reviewers(store: Store, plan_id: int) -> tuple[int, list[str]]:
    """How many items of the plan are approved and who approved them (sorted), counted in the
    store: the items themselves are not read (issue 18)."""
    rows = store.con.execute(
        "WITH d AS (SELECT item_id, decision, reviewer FROM decisions WHERE plan_id = $1"
        " QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY seq DESC) = 1)"
        " SELECT d.reviewer, count(*) FROM plan_items i JOIN d USING (item_id)"
        " WHERE i.plan_id = $1 AND d.decision = 'approved' GROUP BY d.reviewer",
        [plan_id]).fetchall()
    return (sum(n for _, n in rows),
            sorted({reviewer for reviewer, _ in rows if reviewer is not None}))


# The hash of a frozen plan: the plan's row (less what freezing itself writes, and when the plan
# was made, which only retention reads), the registry rows of its two snapshots (what drift's
# cut-off is read from), each approved item's whole plan_items row — every column apply reads:
# payload, target, ids and the state it was planned from — in item order, and the snapshot rows
# of the items' people (what drift compares the live systems with), each table's in id order
# (rows of one id, which snapshots do not make, by the hash of their text: sorting on the text
# itself cost a third more). A column added to any of these tables is covered without changing
# this.
# DuckDB writes each row as one line of JSON — an array of its columns in table order
# (json_array(*COLUMNS(*))) for the many rows, an object for the plan and its snapshots — with
# its part number in front, one sorted stream per part (one table's lines held at a time);
# Python's sha256 (OpenSSL) reads the streams a batch of lines at a time, whole Arrow buffers,
# never a row at a time. DuckDB's own
# sha256 per row, then over the sorted row hashes, was most of `approve --freeze` and of
# apply's check at a million people (issue 18): it hashes an eighth as fast (v3 of the hash;
# a plan frozen by v2 no longer matches and must be frozen again).
HASH_VERSION = b"civimc-audit plan v3\n"
# The approved items' ids and people, read once into a temp table for every part below.
_APPROVED_SQL = """
CREATE OR REPLACE TEMP TABLE _hash_approved AS
WITH d AS (
    SELECT item_id, decision FROM decisions WHERE plan_id = $plan
    QUALIFY row_number() OVER (PARTITION BY item_id ORDER BY seq DESC) = 1
)
SELECT i.item_id, i.contact_id, i.member_id FROM plan_items i JOIN d USING (item_id)
WHERE i.plan_id = $plan AND d.decision = 'approved'
"""
# Each part as (its rows as `k`, `line` — k orders them), one query a part, so DuckDB sorts
# (and holds) one table's lines at a time.
_PLAN_PART = """
SELECT NULL AS k, to_json(h)::VARCHAR AS line FROM (
    SELECT * EXCLUDE (created_at, status, frozen_at, frozen_hash, frozen_reviewers, frozen_by,
                      allow_pending),
           $allow_pending AS allow_pending
    FROM plans WHERE id = $plan) h
"""
_SNAPSHOTS_PART = """
SELECT s.id AS k, to_json(s)::VARCHAR AS line FROM snapshots s
WHERE s.id IN (SELECT civicrm_snapshot_id FROM plans WHERE id = $plan
               UNION ALL SELECT mailchimp_snapshot_id FROM plans WHERE id = $plan)
"""
_ITEMS_PART = """
SELECT item_id AS k, json_array(*COLUMNS(*))::VARCHAR AS line FROM plan_items
WHERE plan_id = $plan AND item_id IN (SELECT item_id FROM _hash_approved)
"""
_PEOPLE_PART = """
SELECT r.id AS k, json_array(*COLUMNS(*))::VARCHAR AS line FROM {table} r
WHERE r.snapshot_id = (SELECT {snapshot} FROM plans WHERE id = $plan)
  AND r.{key} IN (SELECT {of} FROM _hash_approved WHERE {of} IS NOT NULL)
"""
_PARTS = (_PLAN_PART, _SNAPSHOTS_PART, _ITEMS_PART, *(
    _PEOPLE_PART.format(table=table, snapshot=snapshot, key=key, of=of)
    for table, snapshot, key, of in (
        ("civicrm_contact", "civicrm_snapshot_id", "id", "contact_id"),
        ("civicrm_email", "civicrm_snapshot_id", "contact_id", "contact_id"),
        ("civicrm_group_contact", "civicrm_snapshot_id", "contact_id", "contact_id"),
        ("civicrm_subscription_history", "civicrm_snapshot_id", "contact_id", "contact_id"),
        ("mailchimp_member", "mailchimp_snapshot_id", "id", "member_id"))))
_HASH_BATCH = 1 << 16  # lines per Arrow batch read


def plan_hash(store: Store, plan: Plan, allow_pending: bool | None = None) -> str:
    """sha256 of everything apply relies on (see _PARTS): the plan, its snapshots' registry
    rows, every approved item's full row and its people's snapshot rows, written as text by
    DuckDB and hashed as it streams out."""
    pending = bool(plan.allow_pending if allow_pending is None else allow_pending)
    con = store.con
    digest = hashlib.sha256(HASH_VERSION)
    con.execute(_APPROVED_SQL, {"plan": plan.id})
    try:
        for part, sql in enumerate(_PARTS):
            params = {"plan": plan.id, **({"allow_pending": pending} if part == 0 else {})}
            lines = 0
            with warnings.catch_warnings():
                # (con.sql(…), which DuckDB advises for a copy less, takes no parameter dict.)
                warnings.simplefilter("ignore", UserWarning)
                reader = con.execute(
                    f"SELECT concat({part}, chr(9), line, chr(10)) AS line FROM ({sql})"
                    " ORDER BY k, hash(line)", params).to_arrow_reader(_HASH_BATCH)
            for batch in reader or ():
                lines += _digest_text(digest, batch.column(0))
            if part == 0 and not lines:
                raise UsageError(f"plan {plan.id} is not in the store")
    finally:
        con.execute("DROP TABLE IF EXISTS temp.main._hash_approved")
    return digest.hexdigest()


def _digest_text(digest, column) -> int:
    """Feed an Arrow text column's values, one after another, to `digest`: the slice of its
    data buffer they fill (no NULLs: every line is a concat). Returns how many values."""
    if not len(column):
        return 0
    offsets = column.buffers()[1]
    width = 8 if column.type in (pa.large_string(), pa.large_binary()) else 4
    first, last = (int.from_bytes(memoryview(offsets)[(column.offset + i) * width:
                                                      (column.offset + i + 1) * width],
                                  "little", signed=True) for i in (0, len(column)))
    digest.update(memoryview(column.buffers()[2])[first:last])
    return len(column)


def freeze(store: Store, plan_id: int | None, by: str, *, allow_pending: bool = False) -> Plan:
    """Freeze a plan: record the hash of its approved items, its reviewers, who froze it, when.

    `allow_pending` is the reviewers' consent that the resubscribes flagged needs_confirmation,
    when Mailchimp refuses them with "Member In Compliance State", may be re-sent as pending,
    which emails them a confirmation request (no other item is ever sent as pending).
    """
    by = _reviewer(by)
    plan = _open_plan(store, plan_id)
    approved, reviewers = approved_reviewers(store, plan.id)
    if not approved:
        raise UsageError(f"plan {plan.id} has no approved items; approve some before freezing")
    digest = plan_hash(store, plan, allow_pending)
    with store.transaction() as con:
        con.execute(
            "UPDATE plans SET status = 'frozen', frozen_at = ?, frozen_hash = ?,"
            " frozen_reviewers = ?, frozen_by = ?, allow_pending = ? WHERE id = ?"
            " AND status = 'open'",
            [utcnow(), digest, json.dumps(reviewers), by, allow_pending, plan.id])
        checkpoint("freeze")
    return get_plan(store, plan.id)


def check_frozen(store: Store, plan: Plan) -> None:
    """Refuse a plan that is not frozen, or whose approved items no longer match its hash."""
    if not plan.frozen:
        raise UsageError(f"plan {plan.id} is not frozen; approve it and run "
                         f"`civimc-audit approve --plan {plan.id} --freeze` first")
    if plan_hash(store, plan) != plan.frozen_hash:
        raise UsageError(f"plan {plan.id} no longer matches the hash it was frozen with: its "
                         "items, decisions or the snapshots it was planned from changed after "
                         "freezing (or an earlier version froze it); refusing to apply it: "
                         "build and freeze a new plan")
