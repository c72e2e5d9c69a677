"""The audit report: what notebooks/audit.ipynb shows, and running it headless with papermill.

The notebook stays thin: it calls `AuditReport` for every section, so the CLI, tests and the
notebook show the same thing. Names and emails are always escaped, never rendered as HTML.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from civimc_audit import __version__
from civimc_audit.common.codes import EVIDENCE_FLAG_WORDS, OUTCOME_ORDER
from civimc_audit.common.files import write_atomic
from civimc_audit.common.summary import RunSummary, write_summary
from civimc_audit.common.times import iso_utc, run_stamp
from civimc_audit.config import Config, load_config
from civimc_audit.errors import StoreError
from civimc_audit.reconcile import REPORT_COLUMNS, outcome_frame
from civimc_audit.report.evidence import date_evidence_lines, date_evidence_people
from civimc_audit.report.words import OUTCOME_HEADLINES, REASON_WORDS, people_table
from civimc_audit.store import Store

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"  # shipped in the package

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
    **EVIDENCE_FLAG_WORDS,
}
REASON_HELP = {
    "cleaned_at_mailchimp": "Mailchimp cleaned the address after it bounced; it cannot be "
                            "resubscribed. Find a new address for them.",
    "email_on_hold": "The address is on hold in CiviCRM (bounces); fix or replace it first.",
    "other_email_subscribed": "Another of the contact's addresses is subscribed at Mailchimp, "
                              "so the contact is kept in the group (R2), or that address "
                              "changed later than CiviCRM and puts the contact back in the "
                              "group, so this address is not unsubscribed (R9).",
    "no_usable_email": "The contact has no email that is not on hold.",
    "email_shared_with_other_contact": "Their best email is already at Mailchimp as another "
                                       "contact's address, or another contact in the group "
                                       "has the same best email (the lowest contact id is "
                                       "added); merge the duplicates.",
    "no_history_date": "Their CiviCRM subscription history for the group has no usable date (a "
                       "zero date), so nobody knows whether CiviCRM or Mailchimp changed "
                       "later; nothing is removed or added on an unknown date. Fix the history "
                       "date in CiviCRM (or re-add/remove them there) and audit again.",
    "no_member_id": "Mailchimp sent this member record without an id, so it cannot be "
                    "addressed safely; nothing is changed for them. Look the address up in "
                    "Mailchimp and audit again.",
    "no_member_email": "Mailchimp sent this member record without an email address; nothing "
                       "is changed for them. Look the member up in Mailchimp and audit again.",
    "unknown_member_status": "Mailchimp gave the member a status the rules do not know, so "
                             "nothing is removed, unsubscribed or added on it. Check the "
                             "member in Mailchimp.",
    "no_member_change_date": "Mailchimp sent no readable date of the member's last change "
                             "(none, or not a date), so nobody knows which side changed "
                             "later; nothing is changed for them. Audit again later.",
}


REPORT_CSS = """<style>
table.civimc-table th, table.civimc-table td, table.civimc-table tr { text-align: left !important; }
</style>"""


def html_table(frame: pd.DataFrame, max_rows: int | None = None) -> str:
    """An escaped, left-aligned HTML table (names and emails are text, never markup)."""
    return REPORT_CSS + frame.to_html(index=False, escape=True, max_rows=max_rows, na_rep="",
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
        from matplotlib.ticker import MaxNLocator

        data = self.counts()[::-1]
        fig = Figure(figsize=(7, 0.4 * len(data) + 1))
        ax = fig.subplots()
        ax.barh(data["Outcome"], data["People"], color="#3b6ea5")
        for i, v in enumerate(data["People"]):
            ax.text(v, i, f" {v}", va="center")
        ax.set_xlabel("people")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
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
                f"tie_winner = {p.get('tie_winner', 'civicrm')}, "
                f"date_basis = {p.get('date_basis', 'last_changed')}")

    def date_evidence(self) -> str:
        """"How it decided": the date-evidence sentences, as a Markdown list."""
        lines = date_evidence_lines(self.outcomes, self.reconciliation["policy"],
                                    self.snapshots["mailchimp"])
        return "\n".join("- " + line for line in lines)

    def date_evidence_table(self) -> str:
        """The rows a profile edit decided, with the three dates (HTML; empty when none)."""
        people = date_evidence_people(self.outcomes)
        return "" if people.empty else html_table(people, max_rows=100)

    def summary(self) -> RunSummary:
        """Counts for summary.json and the CLI."""
        reasons = self.outcomes["reason_code"].replace("", pd.NA).dropna().value_counts()
        return {
            "reconciliation_id": self.reconciliation["id"],
            "outcomes": {o: int(n) for o, n in self.counts().set_index("Outcome")["People"].items()},
            "reasons": {k: int(v) for k, v in reasons.items()},
            "snapshots": {side: {"id": s.id, "taken_at": iso_utc(s.taken_at)}
                          for side, s in self.snapshots.items()},
        }

    def reason_words(self) -> dict:
        return REASON_WORDS


def ipc_kernel_manager():
    """A kernel manager class whose kernels talk over Unix sockets in a private temporary
    folder. Over TCP, jupyter_client picks free ports and the kernel binds them a moment
    later, so another process can take one first and the run fails at random ("Address
    already in use"); sockets in a folder of our own cannot collide."""
    import shutil
    import subprocess
    import sys
    import tempfile

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import Unicode, default

    class IPCKernelManager(AsyncKernelManager):
        transport = Unicode("ipc")

        @default("ip")
        def _ip_default(self):
            self._ipc_dir = tempfile.mkdtemp(prefix="civimc-kernel-")
            return str(Path(self._ipc_dir) / "k")

        async def _async_pre_start_kernel(self, **kw):
            # The kernel process's own stderr is not the report: libzmq can print an assertion
            # there as a kernel shuts down under load, breaking one-line stderr. Cell errors
            # still reach the notebook through the messaging protocol.
            cmd, kw = await super()._async_pre_start_kernel(**kw)
            kw["stderr"] = subprocess.DEVNULL
            if cmd[1:3] == ["-m", "ipykernel_launcher"]:
                # Whatever "python3" kernelspec the machine has, the report's kernel is this
                # interpreter: the one civimc_audit is installed in (`pip install .` installs
                # no kernelspec of its own).
                cmd = [sys.executable, *cmd[1:]]
            return cmd, kw

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart=restart)
            if not restart and getattr(self, "_ipc_dir", None):
                shutil.rmtree(self._ipc_dir, ignore_errors=True)

    return IPCKernelManager


def new_run_folder(base: Path) -> Path:
    """A new, empty runs/<UTC timestamp>/ folder (suffixed -2, -3… within the same second)."""
    stamp = run_stamp()
    folder = base / stamp
    n = 1
    while True:
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            n += 1
            folder = base / f"{stamp}-{n}"


@contextmanager
def quiet_kernel_transport():
    """Silence tornado's log while papermill talks to the kernel: under load the ZMQ stream can
    log "Uncaught exception in ZMQStream callback" as the kernel shuts down, which is transport
    noise (the notebook's own outcome is what counts) and would break one-line stderr."""
    logger = logging.getLogger("tornado")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def run_report(config: Config, *, reconciliation_id: int | None = None,
               runs_dir: Path | None = None, notebook: Path | None = None,
               folder: Path | None = None, parameters: dict | None = None) -> Path:
    """Execute notebooks/audit.ipynb with papermill into a new run folder (.ipynb, .html,
    summary.json); returns the folder. Only the config path is passed: never a secret.

    `folder` (an existing run folder) and extra notebook `parameters` are for the scheduled
    run (runner.py), which writes the full summary.json itself afterwards."""
    import papermill as pm

    if config.source is None:
        raise StoreError("the report needs a config file on disk (its path is the notebook's "
                         "only parameter)")
    notebook = notebook or NOTEBOOKS / "audit.ipynb"
    if folder is None:  # a report of its own: refuse an unknown reconciliation before a folder
        with Store(config.store_file, read_only=True) as store:
            store.reconciliation(reconciliation_id)
    folder = folder or new_run_folder(runs_dir or config.runs_path)
    out = folder / "audit.ipynb"
    started = time.monotonic()
    status, message = "ok", "report written"
    try:
        with quiet_kernel_transport():
            pm.execute_notebook(
                str(notebook), str(out),
                parameters={"config_path": str(config.source),
                            "reconciliation_id": reconciliation_id, **(parameters or {})},
                progress_bar=False, cwd=str(config.base_dir), kernel_name="python3",
                # The kernel's chatter on stderr (a TCP transport warning, "KeyboardInterrupt caught"
                # when it is stopped after a failed cell) would break the
                # one-line-on-stderr contract that schedulers read.
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
                kernel_manager_class=ipc_kernel_manager(),
            )
    except pm.PapermillExecutionError as exc:
        status, message = "failed", f"report notebook failed: {exc.ename}: {exc.evalue}"
    finally:
        if out.exists():
            write_html(out, folder / "audit.html")
    summary: RunSummary = {"status": status, "message": message, "version": __version__,
               "durations": {"report": round(time.monotonic() - started, 3)}}
    if status == "ok":
        summary.update(AuditReport.load(config=config,
                                        reconciliation_id=reconciliation_id).summary())
    write_summary(folder, summary)
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
    write_atomic(target, body)
