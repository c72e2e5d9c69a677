"""Store data written out as files: snapshots as Parquet or CSV per table, a Mailchimp audience
as a CSV in Mailchimp's import format (so a person can restore it by hand), and any frame as
CSV (`csv_text`, `write_csv`: `outcomes --format csv`, the report's people CSV, the journal).

Apply writes both snapshots of its plan this way before its first change (the backup); the
`export` command does the same for any snapshot. Every CSV goes through `csv_text`, which
defuses cells a spreadsheet would run as formulas (common/csvcells.py), and every file is
owner-only (common/files.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from civimc_audit.common.crashpoints import checkpoint
from civimc_audit.common.csvcells import defuse_sql, frame_csv
from civimc_audit.common.files import make_private, private_dir, write_atomic
from civimc_audit.errors import UsageError
from civimc_audit.store import SNAPSHOT_TABLES, Store

FORMATS = ("parquet", "csv")
# Mailchimp's default merge fields under the column names its import screen maps them from.
IMPORT_NAMES = {"FNAME": "First Name", "LNAME": "Last Name", "ADDRESS": "Address",
                "PHONE": "Phone Number", "BIRTHDAY": "Birthday"}


def csv_text(frame: pd.DataFrame) -> str:
    """`frame` as CSV text (no index), its cells defused against spreadsheet formulas."""
    return frame_csv(frame)


def write_csv(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write `frame` as a defused CSV to `path`, owner-only and in one step."""
    return write_atomic(path, csv_text(frame))


def mailchimp_import_frame(store: Store, snapshot_id: int) -> pd.DataFrame:
    """The audience as Mailchimp's import CSV: Email Address, the merge fields by their import
    names, and the status and change date of each member (import one status at a time)."""
    members = store.con.execute(
        "SELECT email_address, status, last_changed, merge_fields FROM mailchimp_member"
        " WHERE snapshot_id = ? ORDER BY lower(email_address)", [snapshot_id]).fetchall()
    rows, tags = [], []
    for email, status, changed, merge in members:
        fields = json.loads(merge) if merge else {}
        row = {"Email Address": email}
        for tag, value in fields.items():
            name = IMPORT_NAMES.get(tag, tag)
            if name not in tags:
                tags.append(name)
            row[name] = value if not isinstance(value, dict) else json.dumps(value)
        row["Status"] = status
        row["Last Changed"] = "" if changed is None else f"{changed:%Y-%m-%d %H:%M:%S}"
        rows.append(row)
    known = [IMPORT_NAMES["FNAME"], IMPORT_NAMES["LNAME"]]
    columns = ["Email Address", *known, *[t for t in tags if t not in known], "Status",
               "Last Changed"]
    return pd.DataFrame(rows, columns=columns)


def export_snapshot(store: Store, snapshot_id: int, folder: str | Path, fmt: str = "parquet"
                    ) -> list[Path]:
    """Write one snapshot's tables into `folder`; returns the files written."""
    if fmt not in FORMATS:
        raise UsageError(f"export format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    snap = store.snapshot(snapshot_id)
    if snap.status != "complete":
        raise UsageError(f"{snap.source} snapshot {snap.id} is {snap.status}; only complete "
                         "snapshots can be exported")
    folder = private_dir(folder)
    written = []
    for table in SNAPSHOT_TABLES[snap.source]:
        target = folder / f"{table}.{fmt}"
        # COPY takes no prepared parameters; the id is an int from the registry.
        columns = "*" if fmt == "parquet" else _defused_columns(store, table)
        options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
        path = str(target).replace("'", "''")
        store.con.execute(f"COPY (SELECT {columns} FROM (SELECT * EXCLUDE (snapshot_id) FROM"
                          f" {table} WHERE snapshot_id = {int(snap.id)})) TO '{path}' ({options})")
        make_private(target)
        written.append(target)
    if snap.source == "mailchimp":
        target = folder / "mailchimp-import.csv"
        write_csv(mailchimp_import_frame(store, snap.id), target)
        written.append(target)
    return written


def _defused_columns(store: Store, table: str) -> str:
    """The select list of `table` (but snapshot_id) with its text columns defused."""
    cols = store.con.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ?"
        " AND column_name <> 'snapshot_id' ORDER BY ordinal_position", [table]).fetchall()
    return ", ".join(f'{defuse_sql(name)} AS "{name}"' if kind in ("VARCHAR", "JSON")
                     else f'"{name}"' for name, kind in cols)


def backup_snapshots(store: Store, snapshot_ids: list[int], folder: Path) -> list[Path]:
    """Parquet of every table of each snapshot, plus the audience's import CSV."""
    written = []
    for sid in snapshot_ids:
        snap = store.snapshot(sid)
        written += export_snapshot(store, sid, folder / f"{snap.source}-snapshot-{sid}",
                                   "parquet")
        checkpoint("apply_backup")
    return written


# outcome rows as CSV: `outcomes --format csv` and the report's people.csv --------------------
OUTCOME_DATES = ("mailchimp_changed", "mailchimp_status_changed", "civicrm_changed")
#: How DuckDB writes a CSV with the text frame_csv gives: CRLF, and no comment character (by
#: default DuckDB quotes every cell holding a `#`, which pandas does not).
CSV_COPY_OPTIONS = "FORMAT csv, HEADER true, NEW_LINE '\r\n', COMMENT ''"


def outcome_text_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Outcome rows as text formats show them: dates ISO 8601 UTC with a Z (blank when none),
    contact ids as whole numbers (never 12.0)."""
    from civimc_audit.common.times import iso_utc

    frame = frame.copy()
    for col in OUTCOME_DATES:
        if col in frame:
            frame[col] = frame[col].map(lambda v: "" if v is None or v != v else iso_utc(v))
    if "contact_id" in frame:
        frame["contact_id"] = frame["contact_id"].astype("Int64")
    return frame


def outcomes_csv_text(frame: pd.DataFrame, header: bool = True) -> str:
    """The CSV text of outcome rows, defused: what `outcomes --format csv` prints and people.csv
    holds."""
    return frame_csv(outcome_text_frame(frame), header=header)


def write_outcomes_csv(store: Store, reconciliation_id: int, target: Path,
                       columns: list[str], outcome: str | None = None) -> int:
    """Every outcome row of a reconciliation into `target`, the same text as `outcomes --format
    csv` prints (outcomes_csv_text): written by DuckDB itself (COPY … TO), its text cells defused
    in SQL (defuse_sql), dates as ISO 8601 UTC with a Z, blanks for none (an empty text cell is
    written as NULL, so blank like pandas writes it), CRLF line ends. A million rows never pass
    through Python; returns the number of rows."""
    kinds = dict(store.con.execute(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_name = 'outcomes'").fetchall())
    select = ", ".join(_outcome_cell_sql(name, kinds.get(name, "VARCHAR")) for name in columns)
    tmp = target.with_name(target.name + ".tmp")
    path = str(tmp).replace("'", "''")
    # COPY takes no prepared parameters; the id is an int from the registry, the outcome a
    # quoted literal.
    where = f"reconciliation_id = {int(reconciliation_id)}"
    if outcome is not None:
        where += " AND outcome = '" + outcome.replace("'", "''") + "'"
    rows = store.con.execute(
        f"COPY (SELECT {select} FROM outcomes WHERE {where}"
        f" ORDER BY person_id) TO '{path}' ({CSV_COPY_OPTIONS})"
    ).fetchone()
    make_private(tmp)
    tmp.replace(target)
    return int(rows[0]) if rows else 0


def copy_outcomes_csv(store: Store, reconciliation_id: int, columns: list[str], out,
                      outcome: str | None = None) -> int:
    """`outcomes --format csv`: the rows written by write_outcomes_csv into a private temporary
    file, then passed to `out` (a function taking text) in pieces of a megabyte, so a million
    rows never sit in memory; returns the number of rows."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="civimc-outcomes-") as tmp:
        target = Path(tmp) / "outcomes.csv"
        rows = write_outcomes_csv(store, reconciliation_id, target, columns, outcome=outcome)
        with target.open(encoding="utf-8", newline="") as fh:
            while piece := fh.read(1 << 20):
                out(piece)
    return rows


def _outcome_cell_sql(name: str, kind: str) -> str:
    """The SQL of one outcome column as outcomes_csv_text writes its cells."""
    quoted = '"' + name.replace('"', '""') + '"'
    if name in OUTCOME_DATES or kind.startswith("TIMESTAMP"):
        return f"strftime({quoted}, '%Y-%m-%dT%H:%M:%SZ') AS {quoted}"
    if kind in ("VARCHAR", "JSON"):
        return f"nullif({defuse_sql(name)}, '') AS {quoted}"
    return quoted
