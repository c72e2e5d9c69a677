"""Snapshots written out as files: Parquet per table, CSV per table, and for a Mailchimp
audience a CSV in Mailchimp's import format, so a person can restore the audience by hand.

Apply writes both snapshots of its plan this way before its first change (the backup); the
`export` command does the same for any snapshot.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from civimc_audit.errors import UsageError
from civimc_audit.store import SNAPSHOT_TABLES, Store

FORMATS = ("parquet", "csv")
# Mailchimp's default merge fields under the column names its import screen maps them from.
IMPORT_NAMES = {"FNAME": "First Name", "LNAME": "Last Name", "ADDRESS": "Address",
                "PHONE": "Phone Number", "BIRTHDAY": "Birthday"}


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
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for table in SNAPSHOT_TABLES[snap.source]:
        target = folder / f"{table}.{fmt}"
        options = "FORMAT parquet" if fmt == "parquet" else "FORMAT csv, HEADER true"
        path = str(target).replace("'", "''")
        # COPY takes no prepared parameters; the id is an int from the registry.
        store.con.execute(f"COPY (SELECT * EXCLUDE (snapshot_id) FROM {table}"
                          f" WHERE snapshot_id = {int(snap.id)}) TO '{path}' ({options})")
        written.append(target)
    if snap.source == "mailchimp":
        target = folder / "mailchimp-import.csv"
        mailchimp_import_frame(store, snap.id).to_csv(target, index=False)
        written.append(target)
    return written


def backup_snapshots(store: Store, snapshot_ids: list[int], folder: Path) -> list[Path]:
    """Parquet of every table of each snapshot, plus the audience's import CSV."""
    written = []
    for sid in snapshot_ids:
        snap = store.snapshot(sid)
        written += export_snapshot(store, sid, folder / f"{snap.source}-snapshot-{sid}",
                                   "parquet")
    return written


# outcome rows as CSV: `outcomes --format csv` and the report's people.csv --------------------
OUTCOME_DATES = ("mailchimp_changed", "mailchimp_status_changed", "civicrm_changed")


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
    """The CSV text of outcome rows: what `outcomes --format csv` prints and people.csv holds."""
    return outcome_text_frame(frame).to_csv(index=False, header=header)


def write_outcomes_csv(store: Store, reconciliation_id: int, target: Path,
                       columns: list[str], chunk_vectors: int = 50) -> int:
    """Every outcome row of a reconciliation into `target` as `outcomes --format csv` writes
    them, read from the store in chunks (a million rows never sit in one frame); returns the
    number of rows."""
    cursor = store.con.cursor()
    cursor.execute(f"SELECT {', '.join(columns)} FROM outcomes WHERE reconciliation_id = ?"
                   " ORDER BY person_id", [reconciliation_id])
    rows = 0
    tmp = target.with_name(target.name + ".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as out:
        out.write(",".join(columns) + "\n")
        while True:
            chunk = cursor.fetch_df_chunk(chunk_vectors)
            if chunk.empty:
                break
            out.write(outcomes_csv_text(chunk, header=False))
            rows += len(chunk)
    tmp.replace(target)
    cursor.close()
    return rows
