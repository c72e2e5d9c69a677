"""The audit report: what notebooks/audit.ipynb shows, and running it headless with papermill.

The notebook stays thin: it calls `AuditReport` for every section, so the CLI, tests and the
notebook show the same thing. Names and emails are always escaped, never rendered as HTML.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from . import __version__
from .config import Config, load_config
from .errors import StoreError
from .reconcile import REPORT_COLUMNS, outcome_frame
from .store import Store
from .words import OUTCOME_HEADLINES, OUTCOME_ORDER, REASON_WORDS, people_table

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

FLAG_WORDS = {
    "duplicate_contacts": "More than one CiviCRM contact has this email. Merge the duplicates "
                          "in CiviCRM so the sync knows who is who.",
    "contact_deleted": "The email belongs to a contact in CiviCRM's trash. The sync ignores "
                       "trashed contacts; restore or purge them if that is wrong.",
    "consent_conflict": "CiviCRM says not to email this person (do not email, opted out or "
                        "deceased) but they would be or stay subscribed. Check before applying.",
    "civicrm_pending": "The CiviCRM membership is Pending (waiting for confirmation).",
    "no_civicrm_history": "In the CiviCRM group without any subscription history; the sync "
                          "extension never acts on these, this toolkit resolves them by the rule.",
    "needs_confirmation": "They unsubscribed themselves at Mailchimp; they can only be sent a "
                          "confirmation email (pending), never forced back.",
    "email_differs": "Their Mailchimp address is not their best email in CiviCRM.",
}
REASON_HELP = {
    "cleaned_at_mailchimp": "Mailchimp cleaned the address after it bounced; it cannot be "
                            "resubscribed. Find a new address for them.",
    "email_on_hold": "The address is on hold in CiviCRM (bounces); fix or replace it first.",
    "other_email_subscribed": "Another of the contact's addresses is subscribed at Mailchimp, "
                              "so the contact is kept in the group.",
    "no_usable_email": "The contact has no email that is not on hold.",
    "email_shared_with_other_contact": "Their best email is already at Mailchimp as another "
                                       "contact's address; merge the duplicates.",
}


def html_table(frame: pd.DataFrame, max_rows: int | None = None) -> str:
    """An escaped HTML table (names and emails are text, never markup)."""
    return frame.to_html(index=False, escape=True, max_rows=max_rows, na_rep="",
                         classes="civimc-table", border=0)


@dataclass
class AuditReport:
    """Everything the audit notebook shows about one reconciliation."""

    config: Config
    reconciliation: dict
    snapshots: dict
    outcomes: pd.DataFrame

    @classmethod
    def load(cls, config_path: str | None = None, reconciliation_id: int | None = None,
             config: Config | None = None) -> AuditReport:
        config = config or load_config(config_path)
        with Store(config.store_file, read_only=True) as store:
            rec = store.reconciliation(reconciliation_id)
            snaps = {"civicrm": store.snapshot(rec["civicrm_snapshot_id"]),
                     "mailchimp": store.snapshot(rec["mailchimp_snapshot_id"])}
            frame = outcome_frame(store, rec["id"], columns=REPORT_COLUMNS)
        return cls(config, rec, snaps, frame)

    # 1. what was compared
    def compared(self) -> pd.DataFrame:
        civi, mc = self.snapshots["civicrm"], self.snapshots["mailchimp"]
        people_civi = int(self.outcomes["contact_id"].notna().sum())
        people_mc = int(self.outcomes["mailchimp_status"].notna().sum())
        return pd.DataFrame([
            {"Side": "CiviCRM group", "Id": str(civi.meta.get("group_id")),
             "Name": civi.meta.get("group_title") or civi.meta.get("group_name") or "",
             "Snapshot": civi.id, "Taken (UTC)": f"{civi.taken_at:%Y-%m-%d %H:%M:%S}",
             "People": people_civi},
            {"Side": "Mailchimp audience", "Id": mc.meta.get("list_id"),
             "Name": mc.meta.get("list_name") or "", "Snapshot": mc.id,
             "Taken (UTC)": f"{mc.taken_at:%Y-%m-%d %H:%M:%S}", "People": people_mc},
        ])

    # 2. what would happen
    def counts(self) -> pd.DataFrame:
        counts = self.outcomes["outcome"].value_counts()
        return pd.DataFrame([{"Outcome": o, "People": int(counts.get(o, 0))}
                             for o in OUTCOME_ORDER])

    def headlines(self) -> list[str]:
        """One sentence per non-empty outcome, removals and cannot_sync first."""
        lines = []
        for row in self.counts().itertuples():
            if row.People:
                singular, plural = OUTCOME_HEADLINES[row.Outcome]
                text = f"1 person {singular}" if row.People == 1 else f"{row.People} people {plural}"
                lines.append(text + ".")
        return lines or ["Nobody is in the group or the audience."]

    def chart_png(self) -> bytes:
        """The outcome counts as a horizontal bar chart (PNG bytes, no display backend needed)."""
        import io

        from matplotlib.figure import Figure

        data = self.counts()[::-1]
        fig = Figure(figsize=(7, 0.4 * len(data) + 1))
        ax = fig.subplots()
        ax.barh(data["Outcome"], data["People"], color="#3b6ea5")
        for i, v in enumerate(data["People"]):
            ax.text(v, i, f" {v}", va="center")
        ax.set_xlabel("people")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=96)
        return buf.getvalue()

    # 3. the people
    def people(self) -> pd.DataFrame:
        year = self.snapshots["mailchimp"].taken_at.year
        return people_table(self.outcomes, year)

    # 4. review buckets
    def buckets(self) -> pd.DataFrame:
        rows = []
        reasons = self.outcomes["reason_code"].replace("", pd.NA).dropna().value_counts()
        for code, n in reasons.items():
            rows.append({"Bucket": code, "Kind": "cannot sync", "People": int(n),
                         "What it means and what to do": REASON_HELP.get(code, "")})
        flags = self.outcomes["flags"].str.split().explode().dropna().value_counts()
        for code, n in flags.items():
            rows.append({"Bucket": code, "Kind": "flag", "People": int(n),
                         "What it means and what to do": FLAG_WORDS.get(code, "")})
        return pd.DataFrame(rows, columns=["Bucket", "Kind", "People",
                                           "What it means and what to do"])

    def bucket_people(self, code: str) -> pd.DataFrame:
        frame = self.outcomes
        mask = (frame["reason_code"] == code) | frame["flags"].str.split().apply(
            lambda fl: code in fl)
        return people_table(frame[mask], self.snapshots["mailchimp"].taken_at.year)

    def policy_text(self) -> str:
        p = self.reconciliation["policy"]
        return (f"honor_civicrm_consent = {str(p.get('honor_civicrm_consent', False)).lower()}, "
                f"tie_winner = {p.get('tie_winner', 'civicrm')}")

    def summary(self) -> dict:
        """Counts for summary.json and the CLI."""
        reasons = self.outcomes["reason_code"].replace("", pd.NA).dropna().value_counts()
        return {
            "reconciliation_id": self.reconciliation["id"],
            "outcomes": {o: int(n) for o, n in self.counts().set_index("Outcome")["People"].items()},
            "reasons": {k: int(v) for k, v in reasons.items()},
            "snapshots": {side: {"id": s.id, "taken_at": f"{s.taken_at:%Y-%m-%dT%H:%M:%SZ}"}
                          for side, s in self.snapshots.items()},
        }

    def reason_words(self) -> dict:
        return REASON_WORDS


def run_stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def run_report(config: Config, *, reconciliation_id: int | None = None,
               runs_dir: Path | None = None, notebook: Path | None = None) -> Path:
    """Execute notebooks/audit.ipynb with papermill into a new run folder (.ipynb, .html,
    summary.json); returns the folder. Only the config path is passed: never a secret."""
    import papermill as pm

    if config.source is None:
        raise StoreError("the report needs a config file on disk (its path is the notebook's "
                         "only parameter)")
    notebook = notebook or NOTEBOOKS / "audit.ipynb"
    base = runs_dir or config.runs_path
    folder = base / run_stamp()
    n = 1
    while folder.exists():
        n += 1
        folder = base / f"{run_stamp()}-{n}"
    folder.mkdir(parents=True)
    out = folder / "audit.ipynb"
    started = time.monotonic()
    status, message = "ok", "report written"
    try:
        pm.execute_notebook(
            str(notebook), str(out),
            parameters={"config_path": str(config.source),
                        "reconciliation_id": reconciliation_id},
            progress_bar=False, cwd=str(config.base_dir), kernel_name="python3",
        )
    except pm.PapermillExecutionError as exc:
        status, message = "failed", f"report notebook failed: {exc.ename}: {exc.evalue}"
    finally:
        if out.exists():
            write_html(out, folder / "audit.html")
    summary = {"status": status, "message": message, "version": __version__,
               "durations": {"report": round(time.monotonic() - started, 3)}}
    if status == "ok":
        summary.update(AuditReport.load(config=config,
                                        reconciliation_id=reconciliation_id).summary())
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if status != "ok":
        raise StoreError(f"{message} (see {out})")
    return folder


def write_html(notebook: Path, target: Path) -> None:
    """The executed notebook as a standalone HTML page without code cells."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    target.write_text(body, encoding="utf-8")
