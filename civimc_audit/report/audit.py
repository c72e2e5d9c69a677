"""The audit report: what notebooks/audit.ipynb shows, and running it headless with papermill.

The notebook stays thin: it calls `AuditReport` for every section, so the CLI, tests and the
notebook show the same thing. Names and emails are always escaped, never rendered as HTML.
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import re
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from civimc_audit import __version__
from civimc_audit.common.codes import NEVER_AUTO_APPROVED_FLAGS, OUTCOME_ORDER, code_help
from civimc_audit.common.files import DIR_MODE, make_private, private_dir, write_atomic
from civimc_audit.common.summary import RunSummary, write_summary
from civimc_audit.common.times import iso_utc, run_stamp
from civimc_audit.config import NOTEBOOK_CONFIG_HINT, Config, load_config
from civimc_audit.errors import CivimcError, StoreError
from civimc_audit.reconcile import REPORT_COLUMNS
from civimc_audit.report.evidence import date_evidence_lines, date_evidence_people
from civimc_audit.report.words import (
    OUTCOME_HEADLINES,
    OUTCOME_LABELS,
    OUTCOME_WORDS,
    REASON_WORDS,
    people_table,
)
from civimc_audit.store import Store
from civimc_audit.store.lock import open_for_reading

if TYPE_CHECKING:  # pandas is imported where it is used: `civimc-audit report`'s own
    import pandas as pd  # process (run_report) never needs it

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"  # shipped in the package

REPORT_CSS = """<style>
table.civimc-table th, table.civimc-table td, table.civimc-table tr { text-align: left !important; }
table.civimc-table td { vertical-align: top; }
.civimc-headline { font-size: 1.25em; font-weight: bold; margin: 0.3em 0; }
.civimc-toc { margin: 0.2em 0 0.6em 0; }
.civimc-toc a { margin-right: 1.2em; white-space: nowrap; }
details.civimc-bucket { margin: 0.3em 0; } details.civimc-bucket summary { cursor: pointer; }
table.civimc-where td, table.civimc-where th { border: 1px solid #ccc; padding: 4px 6px;
  vertical-align: top; font-size: 0.9em; }
.civimc-o { display: block; padding: 1px 4px; margin: 1px 0; border-radius: 3px; text-align: left; }
table.civimc-where th { text-align: left !important; }
/* The people table fits a laptop: fixed layout over the page's width, long text wraps. */
table.civimc-people { table-layout: fixed; width: 100% !important; }
table.civimc-people td, table.civimc-people th { text-align: left !important; vertical-align: top;
  white-space: normal !important; overflow-wrap: anywhere; }
table.civimc-people th:nth-child(1) { width: 12%; } table.civimc-people th:nth-child(2) { width: 17%; }
table.civimc-people th:nth-child(3) { width: 10%; } table.civimc-people th:nth-child(4) { width: 11%; }
table.civimc-people th:nth-child(5) { width: 13%; } table.civimc-people th:nth-child(6) { width: 27%; }
table.civimc-people th:nth-child(7) { width: 10%; }
table.civimc-people thead input { width: 100%; box-sizing: border-box; }
.civimc-o-removal { background: #f6d5d5; } .civimc-o-cannot { background: #f8e6c4; }
.civimc-o-add { background: #d8ecd6; } .civimc-o-same { background: #eee; }
</style>"""

FULL_LIST = 300     # up to this many people the report lists everyone
PER_OUTCOME = 50    # beyond that, the first people of each outcome (all of them are in the CSV)
BUCKET_ROWS = 20    # people listed under each review bucket (folded until opened)
EVIDENCE_ROWS = 100  # rows a profile edit decided, listed under "How it decides"
PEOPLE_CSV = "people.csv"  # written beside audit.html by run_report
REMOVALS = ("remove_from_civicrm_group", "unsubscribe_in_mailchimp")
ADDITIONS = ("add_to_mailchimp", "resubscribe_in_mailchimp", "add_to_civicrm_group")

# The report's sections, in docs/design.md's order: (anchor, title). A section is one markdown
# heading cell and one code cell in notebooks/audit.ipynb; a new one is added here and there.
SECTIONS = [("how-it-decides", "How it decides"), ("what-would-happen", "What would happen"),
            ("where-people-go", "Where people go"), ("the-people", "The people"),
            ("interest-groups", "Interest groups"), ("review-buckets", "Review buckets")]

# Where a person stands on the CiviCRM side, in words (the picture of where people go).
CIVICRM_STATE_SQL = """CASE WHEN contact_id IS NULL THEN '(does not exist)'
     WHEN civicrm_status = 'Added' THEN 'in group'
     WHEN civicrm_status IS NULL AND civicrm_history_status IS NULL THEN 'never in group'
     ELSE lower(coalesce(civicrm_status, civicrm_history_status)) END"""


def html_table(frame: pd.DataFrame, max_rows: int | None = None) -> str:
    """An escaped, left-aligned HTML table (names and emails are text, never markup)."""
    return REPORT_CSS + frame.to_html(index=False, escape=True, max_rows=max_rows, na_rep="",
                                      classes="civimc-table", border=0)


def offline_tables() -> None:
    """Load the sortable, searchable tables' JavaScript into the notebook (itables' offline
    bundle: the page needs no network)."""
    from itables import init_notebook_mode

    init_notebook_mode(connected=False, all_interactive=False)


def interactive_table(frame: pd.DataFrame, table_id: str | None = None,
                      css_class: str = "civimc-people") -> str:
    """The frame as a sortable, searchable table with a filter box per column (DataTables via
    itables, offline). Cell text is escaped (itables' allow_html is off)."""
    from itables import to_html_datatable

    return REPORT_CSS + to_html_datatable(
        frame, connected=False, table_id=table_id or f"civimc-{id(frame)}", maxBytes=0,
        maxRows=0, showIndex=False,
        classes=f"display compact cell-border {css_class}".strip(), column_filters="header",
        pageLength=25,
        lengthMenu=[10, 25, 50, 100, 500],
        layout={"topStart": "pageLength", "topEnd": "search", "bottomStart": "info",
                "bottomEnd": "paging"},
        style="width:100%; table-layout:auto", autoWidth=False)


def where_html(where: pd.DataFrame) -> str:
    """The picture of where people go: a grid of Mailchimp state (rows) × CiviCRM state
    (columns), each cell listing the outcomes people there get, with counts."""
    if where.empty:
        return "<p>Nobody is in the group or the audience.</p>"
    mc_states = list(dict.fromkeys(where.sort_values("mc_order")["mc_state"]))
    civi_states = list(dict.fromkeys(where.sort_values("civi_order")["civi_state"]))
    head = "".join(f"<th>CiviCRM: {html.escape(c)}</th>" for c in civi_states)
    rows = []
    for mc in mc_states:
        cells = []
        for civi in civi_states:
            here = where[(where["mc_state"] == mc) & (where["civi_state"] == civi)]
            here = here.assign(rank=here["outcome"].map(
                {o: i for i, o in enumerate(OUTCOME_ORDER)})).sort_values("rank")
            cells.append("<td>" + "".join(
                f'<span class="civimc-o civimc-o-{outcome_kind(r.outcome)}">'
                f"{html.escape(OUTCOME_WORDS[r.outcome])}: {int(r.people):,}</span>"
                for r in here.itertuples()) + "</td>")
        rows.append(f"<tr><th>Mailchimp: {html.escape(mc)}</th>{''.join(cells)}</tr>")
    return (REPORT_CSS + '<table class="civimc-where"><thead><tr><th></th>' + head
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def warm_chart_imports() -> None:
    """Import matplotlib's Figure and Agg canvas in a thread while the store's queries run
    (DuckDB lets go of the GIL), so the chart does not wait for the import later."""
    import threading

    def load() -> None:
        with contextlib.suppress(ImportError):
            import matplotlib.backends.backend_agg  # noqa: F401
            import matplotlib.figure  # noqa: F401
            import matplotlib.ticker  # noqa: F401

    if "matplotlib.figure" not in sys.modules:
        threading.Thread(target=load, daemon=True).start()


def outcome_kind(outcome: str) -> str:
    """removal, cannot, add or same: how a cell is coloured."""
    return ("removal" if outcome in REMOVALS else "cannot" if outcome == "cannot_sync"
            else "same" if outcome == "no_change" else "add")


def plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


@dataclass
class AuditReport:
    """Everything the audit notebook shows about one reconciliation, computed in the store with
    SQL: the counts over everyone, and only the rows it lists (all people up to FULL_LIST, else
    the first PER_OUTCOME of each outcome; BUCKET_ROWS a review bucket)."""

    config: Config
    reconciliation: dict
    snapshots: dict
    sizes: dict
    outcome_counts: dict[str, int]
    reason_counts: dict[str, int]
    flag_counts: dict[str, int]
    where: pd.DataFrame
    shown: pd.DataFrame
    bucket_rows: dict[str, pd.DataFrame]
    evidence: pd.DataFrame       # flags and winner of every row carrying a date-evidence flag
    evidence_rows: pd.DataFrame  # the first EVIDENCE_ROWS rows a profile edit decided

    @classmethod
    def load(cls, config_path: str | None = None, reconciliation_id: int | None = None,
             config: Config | None = None) -> AuditReport:
        config = config or load_config(config_path, hint=NOTEBOOK_CONFIG_HINT)
        warm_chart_imports()
        store, _note = open_for_reading(config.store_file)
        with store:
            rec = store.reconciliation(reconciliation_id)
            snaps = {"civicrm": store.snapshot(rec["civicrm_snapshot_id"]),
                     "mailchimp": store.snapshot(rec["mailchimp_snapshot_id"])}
            q = _Queries(store, rec["id"])
            outcomes = q.counts("outcome")
            reasons = q.counts("reason_code", "reason_code <> ''")
            flags = q.flag_counts()
            total = sum(outcomes.values())
            shown = q.rows(None if total <= FULL_LIST else PER_OUTCOME)
            buckets = {code: q.rows(BUCKET_ROWS, where, code) for code, where in
                       [*((c, "reason_code = ?") for c in reasons),
                        *((f, "list_contains(string_split(flags, ' '), ?)") for f in flags)]}
            evidence = q.evidence()
            evidence_rows = q.rows(None, "list_contains(string_split(flags, ' '), ?)",
                                   "profile_edit_decided", limit=EVIDENCE_ROWS)
            return cls(config, rec, snaps, q.sizes(snaps), outcomes, reasons, flags,
                       q.where(), shown, buckets, evidence, evidence_rows)

    @property
    def total(self) -> int:
        return sum(self.outcome_counts.values())

    @property
    def year(self) -> int:
        return self.snapshots["mailchimp"].taken_at.year

    # the page's frame ----------------------------------------------------------------------
    @staticmethod
    def heading(anchor: str) -> str:
        """A section's heading with the id its table-of-contents link points at."""
        title = dict(SECTIONS)[anchor]
        return f'<h2 id="{anchor}">{html.escape(title)}</h2>'

    @property
    def sections(self) -> list[tuple[str, str]]:
        """The page's sections (anchor, title): interest groups only when [interests] maps any."""
        return [(a, t) for a, t in SECTIONS if a != "interest-groups" or self.config.interests]

    def top_html(self) -> str:
        """The headline and the table of contents, for the top of the page."""
        toc = "".join(f'<a href="#{a}">{html.escape(t)}</a>' for a, t in self.sections)
        return (REPORT_CSS + f'<p class="civimc-headline">{html.escape(self.headline())}</p>'
                + f'<nav class="civimc-toc" aria-label="Contents"><b>Contents:</b> {toc}</nav>')

    # the headline and what was compared ----------------------------------------------------
    def headline(self) -> str:
        """"N of M people already agree; K changes would be made, R of them removals; C cannot
        be synced"."""
        n = self.outcome_counts
        agree = n.get("no_change", 0)
        changes = sum(n.get(o, 0) for o in (*REMOVALS, *ADDITIONS))
        removals = sum(n.get(o, 0) for o in REMOVALS)
        cannot = n.get("cannot_sync", 0)
        return (f"{agree:,} of {plural(self.total, 'person', 'people')} already agree; "
                f"{plural(changes, 'change would', 'changes would')} be made, "
                f"{removals:,} of them {'a removal' if removals == 1 else 'removals'}; "
                f"{cannot:,} cannot be synced.")

    def compared(self) -> pd.DataFrame:
        import pandas as pd

        civi, mc = self.snapshots["civicrm"], self.snapshots["mailchimp"]
        statuses = ", ".join(f"{n:,} {s}" for s, n in self.sizes["audience"].items()) or "none"
        return pd.DataFrame([
            {"Side": "CiviCRM group", "Id": str(civi.meta.get("group_id")),
             "Name": civi.meta.get("group_title") or civi.meta.get("group_name") or "",
             "Members": f"{self.sizes['group']:,} in the group",
             "Snapshot taken (UTC)": f"{civi.taken_at:%Y-%m-%d %H:%M:%S}"},
            {"Side": "Mailchimp audience", "Id": mc.meta.get("list_id"),
             "Name": mc.meta.get("list_name") or "", "Members": statuses,
             "Snapshot taken (UTC)": f"{mc.taken_at:%Y-%m-%d %H:%M:%S}"},
        ])

    # how it decides ------------------------------------------------------------------------
    def how_it_decides(self) -> str:
        """The rule, the tie rule, the policy in force and the caveat, as Markdown."""
        p = self.reconciliation["policy"]
        tie = p.get("tie_winner", "civicrm")
        honor = bool(p.get("honor_civicrm_consent", False))
        basis = p.get("date_basis", "last_changed")
        return (
            "Mailchimp records when each member last changed; CiviCRM records when a contact "
            "was added to or removed from the group (its subscription history). **Whichever "
            "date is later decides** whether the person is in or out, and the other system is "
            "changed to match. Without any CiviCRM history Mailchimp decides; without a "
            "Mailchimp member CiviCRM decides.\n\n"
            f"**Ties:** when both changed in the same second, {WINNER_WORDS.get(tie, tie)} wins.\n\n"
            "**Policy in force:** "
            + ("people CiviCRM says not to email (do not email, opted out, deceased) are never "
               "subscribed." if honor else
               "CiviCRM's do-not-email, opt-out and deceased are shown as a flag "
               "(consent_conflict) but do not change the outcome.")
            + "\n\n**Caveat:** Mailchimp's *last changed* date also moves when only a name or "
            "an interest changes, so a profile edit can make Mailchimp the later side. Each "
            "person's reason (the Why column) names the date that decided. "
            + ("Policy date_basis = \"status_change\": where Mailchimp's last change was only a "
               "profile edit, its status-change date decides instead."
               if basis == "status_change" else
               "Policy date_basis = \"last_changed\": the later date decides even when it was "
               "only a profile edit, as in the sync (such rows carry the flag "
               "profile_edit_decided)."))

    def policy_text(self) -> str:
        p = self.reconciliation["policy"]
        return (f"honor_civicrm_consent = {str(p.get('honor_civicrm_consent', False)).lower()}, "
                f"tie_winner = {p.get('tie_winner', 'civicrm')}, "
                f"date_basis = {p.get('date_basis', 'last_changed')}")

    # what would happen ---------------------------------------------------------------------
    def counts(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame([{"Outcome": o, "People": int(self.outcome_counts.get(o, 0))}
                             for o in OUTCOME_ORDER])

    def headlines(self) -> list[str]:
        """One sentence per non-empty outcome, removals and cannot_sync first."""
        lines = []
        for row in self.counts().itertuples():
            if row.People:
                singular, many = OUTCOME_HEADLINES[row.Outcome]
                text = f"1 person {singular}" if row.People == 1 else f"{row.People:,} people {many}"
                lines.append(text + ".")
        return lines or ["Nobody is in the group or the audience."]

    def chart_png(self) -> bytes:
        """The non-empty outcomes as a horizontal bar chart labelled in the same words as the
        lines above it (PNG bytes, no display backend needed)."""
        import io

        from matplotlib.figure import Figure
        from matplotlib.ticker import MaxNLocator

        data = self.counts()
        data = data[data["People"] > 0][::-1]
        labels = [OUTCOME_LABELS[o] for o in data["Outcome"]]
        colors = [CHART_COLORS[outcome_kind(o)] for o in data["Outcome"]]
        fig = Figure(figsize=(8, 0.45 * len(data) + 1))
        ax = fig.subplots()
        ax.barh(labels, data["People"], color=colors)
        for i, v in enumerate(data["People"]):
            ax.text(v, i, f" {v:,}", va="center")
        ax.set_xlabel("people")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.margins(x=0.15)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=96)
        return buf.getvalue()

    def chart_html(self) -> str:
        """The chart as an <img> whose alternative text is the same lines in words."""
        import base64

        data = base64.b64encode(self.chart_png()).decode("ascii")
        alt = html.escape(" ".join(self.headlines()), quote=True)
        return f'<img alt="{alt}" src="data:image/png;base64,{data}">'

    # the people ----------------------------------------------------------------------------
    def people(self) -> pd.DataFrame:
        return people_table(self.shown, self.year)

    def people_note(self, csv_name: str | None) -> str:
        """Whether everyone is listed, and where the full list is."""
        if self.total <= FULL_LIST:
            return f"All {plural(self.total, 'person', 'people')}, removals first."
        where = (f'<a href="{html.escape(csv_name)}">{html.escape(csv_name)}</a> (beside this '
                 "page)" if csv_name else "`civimc-audit outcomes --format csv`")
        return (f"The first {PER_OUTCOME} people of each outcome ({len(self.shown):,} of "
                f"{self.total:,}), removals first. Everyone is in {where}.")

    # review buckets ------------------------------------------------------------------------
    def buckets(self) -> pd.DataFrame:
        """Each reason code and each flag present, with its count and what it means."""
        import pandas as pd

        rows = [{"Bucket": code, "Kind": kind, "People": n,
                 "What it means and what to do": code_help(code)[1]}
                for kind, counts in (("cannot be synced", self.reason_counts),
                                     ("flag", self.flag_counts))
                for code, n in counts.items()]
        return pd.DataFrame(rows, columns=["Bucket", "Kind", "People",
                                           "What it means and what to do"])

    def bucket_people(self, code: str) -> pd.DataFrame:
        return people_table(self.bucket_rows[code], self.year)

    def bucket_note(self, code: str) -> str:
        n = self.reason_counts.get(code) or self.flag_counts.get(code) or 0
        first = f" (the first {BUCKET_ROWS})" if n > BUCKET_ROWS else ""
        return f"**{code}**: {code_help(code)[1]} {plural(n, 'person', 'people')}{first}:"

    def date_evidence(self) -> str:
        """"How it decides": the date-evidence sentences, as a Markdown list."""
        lines = date_evidence_lines(self.evidence, self.reconciliation["policy"],
                                    self.snapshots["mailchimp"])
        return "\n".join("- " + line for line in lines)

    def date_evidence_table(self) -> str:
        """The rows a profile edit decided (the first EVIDENCE_ROWS), with the three dates
        (HTML; empty when none)."""
        people = date_evidence_people(self.evidence_rows)
        return "" if people.empty else html_table(people)

    def bucket_html(self, code: str) -> str:
        """One bucket's people, folded under a line naming the bucket and its count (click to
        open), so the page stays short however many buckets there are."""
        n = self.reason_counts.get(code) or self.flag_counts.get(code) or 0
        first = f", the first {BUCKET_ROWS} shown" if n > BUCKET_ROWS else ""
        return (f'<details class="civimc-bucket"><summary><b>{html.escape(code)}</b> — '
                f"{html.escape(code_help(code)[0])}: {plural(n, 'person', 'people')}{first}"
                f"</summary>{html_table(self.bucket_people(code))}</details>")

    # machine-readable ----------------------------------------------------------------------
    def summary(self) -> RunSummary:
        """Counts for summary.json and the CLI."""
        return _summary(self.reconciliation["id"], self.outcome_counts, self.reason_counts,
                        self.snapshots)

    @staticmethod
    def summary_of(config: Config, reconciliation_id: int | None = None) -> RunSummary:
        """`summary()` of a reconciliation, from its counts alone (no rows read)."""
        store, _note = open_for_reading(config.store_file)
        with store:
            rec = store.reconciliation(reconciliation_id)
            q = _Queries(store, rec["id"])
            snaps = {side: store.snapshot(rec[f"{side}_snapshot_id"])
                     for side in ("civicrm", "mailchimp")}
            return _summary(rec["id"], q.counts("outcome"),
                            q.counts("reason_code", "reason_code <> ''"), snaps)

    def reason_words(self) -> dict:
        return REASON_WORDS


def _summary(rid: int, outcomes: dict, reasons: dict, snapshots: dict) -> RunSummary:
    return {
        "reconciliation_id": rid,
        "outcomes": {o: int(outcomes.get(o, 0)) for o in OUTCOME_ORDER},
        "reasons": dict(reasons),
        "snapshots": {side: {"id": s.id, "taken_at": iso_utc(s.taken_at)}
                      for side, s in snapshots.items()},
    }


WINNER_WORDS = {"civicrm": "CiviCRM", "mailchimp": "Mailchimp"}
CHART_COLORS = {"removal": "#c0504d", "cannot": "#e0a030", "add": "#4f9a4a", "same": "#999999"}


class _Queries:
    """The report's SQL over one reconciliation's outcome rows."""

    def __init__(self, store: Store, reconciliation_id: int):
        self.con, self.rec = store.con, reconciliation_id

    def counts(self, column: str, extra: str = "TRUE") -> dict[str, int]:
        got = self.con.execute(f"SELECT {column}, count(*) FROM outcomes WHERE "
                               f"reconciliation_id = ? AND {extra} GROUP BY 1 ORDER BY 2 DESC, 1",
                               [self.rec]).fetchall()
        return {k: int(v) for k, v in got}

    def flag_counts(self) -> dict[str, int]:
        got = self.con.execute(
            "SELECT code, count(*) FROM (SELECT unnest(string_split(flags, ' ')) AS code"
            " FROM outcomes WHERE reconciliation_id = ? AND coalesce(flags, '') <> '')"
            " WHERE code <> '' GROUP BY 1 ORDER BY 2 DESC, 1", [self.rec]).fetchall()
        return {k: int(v) for k, v in got}

    def rows(self, per_outcome: int | None, where: str | None = None,
             code: str | None = None, limit: int | None = None) -> pd.DataFrame:
        """Outcome rows: all (per_outcome None), or the first `per_outcome` of each outcome;
        `where` filters with one parameter (`code`, taken from the bucket's name)."""
        sql = f"SELECT {', '.join(REPORT_COLUMNS)} FROM outcomes WHERE reconciliation_id = ?"
        args: list = [self.rec]
        if where:
            sql += f" AND {where}"
            args.append(code)
        if per_outcome is not None:
            sql += (" QUALIFY row_number() OVER (PARTITION BY outcome ORDER BY person_id)"
                    f" <= {int(per_outcome)}")
        sql += " ORDER BY person_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self.con.execute(sql, args).df()

    def evidence(self) -> pd.DataFrame:
        """flags and winner of the rows carrying a date-evidence flag (what the date-evidence
        sentences count)."""
        flags = ", ".join(f"'{f}'" for f in NEVER_AUTO_APPROVED_FLAGS)
        return self.con.execute(
            "SELECT flags, winner FROM outcomes WHERE reconciliation_id = ? AND"
            f" list_has_any(string_split(flags, ' '), [{flags}])", [self.rec]).df()

    def where(self) -> pd.DataFrame:
        return self.con.execute(
            f"SELECT coalesce(mailchimp_status, '(does not exist)') AS mc_state,"
            f" {CIVICRM_STATE_SQL} AS civi_state, outcome, count(*) AS people"
            " FROM outcomes WHERE reconciliation_id = ? GROUP BY ALL", [self.rec]).df().assign(
            mc_order=lambda f: f["mc_state"].map(MC_ORDER).fillna(50),
            civi_order=lambda f: f["civi_state"].map(CIVI_ORDER).fillna(50))

    def sizes(self, snaps: dict) -> dict:
        """The group's real size (contacts whose latest group row is Added, trash left out) and
        the audience's members by status."""
        civi, mc = snaps["civicrm"], snaps["mailchimp"]
        group = self.con.execute(
            "SELECT count(*) FROM (SELECT contact_id, arg_max(status, id) AS s"
            " FROM civicrm_group_contact WHERE snapshot_id = ? AND group_id = ? GROUP BY 1) g"
            " JOIN civicrm_contact c ON c.id = g.contact_id AND c.snapshot_id = ?"
            " WHERE g.s = 'Added' AND NOT coalesce(c.is_deleted, false)",
            [civi.id, civi.meta.get("group_id"), civi.id]).fetchone()
        audience = self.con.execute(
            "SELECT status, count(*) FROM mailchimp_member WHERE snapshot_id = ?"
            " GROUP BY 1 ORDER BY 2 DESC, 1", [mc.id]).fetchall()
        return {"group": int(group[0]) if group else 0,
                "audience": {s: int(n) for s, n in audience}}


MC_ORDER = {s: i for i, s in enumerate(["subscribed", "pending", "unsubscribed", "cleaned",
                                        "transactional", "archived", "(does not exist)"])}
CIVI_ORDER = {s: i for i, s in enumerate(["in group", "pending", "removed", "deleted",
                                          "never in group", "(does not exist)"])}

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
    private_dir(base)
    while True:
        try:
            folder.mkdir(mode=DIR_MODE)
            os.chmod(folder, DIR_MODE)  # mkdir's mode is masked by the umask
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


def import_nbformat_quickly() -> None:
    """Import nbformat (papermill's and nbconvert's) without jsonschema's IRI format checker.

    nbformat validates notebooks with jsonschema, which, where the optional rfc3987_syntax is
    installed (Jupyter pulls it in), compiles some 40 grammars at import: about 3 s of every
    report. The notebook schema uses no IRI format, so jsonschema is imported with that
    module hidden (jsonschema then leaves the checker out), once per process."""
    if "jsonschema" in sys.modules:
        return
    hidden = "rfc3987_syntax" not in sys.modules
    if hidden:
        sys.modules["rfc3987_syntax"] = None  # type: ignore[assignment]  # import -> ImportError
    try:
        import nbformat  # noqa: F401
    finally:
        if hidden:
            del sys.modules["rfc3987_syntax"]


def run_report(config: Config, *, reconciliation_id: int | None = None,
               runs_dir: Path | None = None, notebook: Path | None = None,
               folder: Path | None = None, parameters: dict | None = None) -> Path:
    """Execute notebooks/audit.ipynb with papermill into a new run folder (.ipynb, .html,
    summary.json); returns the folder. Only the config path is passed: never a secret.

    `folder` (an existing run folder) and extra notebook `parameters` are for the scheduled
    run (runner.py), which writes the full summary.json itself afterwards."""
    import_nbformat_quickly()

    if config.source is None:
        raise StoreError("the report needs a config file on disk (its path is the notebook's "
                         "only parameter)")
    notebook = notebook or NOTEBOOKS / "audit.ipynb"
    if folder is None:  # a report of its own: refuse an unknown reconciliation before a folder
        store, _note = open_for_reading(config.store_file)
        with store:
            store.reconciliation(reconciliation_id)
    folder = folder or new_run_folder(runs_dir or config.runs_path)
    out = folder / "audit.ipynb"
    started = time.monotonic()
    status, message = "ok", "report written"
    # While the kernel starts and runs, the parent (otherwise idle) writes people.csv and
    # readies the HTML exporter on the machine's other core: both are off the critical path.
    side = _SideWork(config, reconciliation_id, folder / PEOPLE_CSV)
    import papermill as pm

    executed = None
    try:
        with quiet_kernel_transport():
            executed = pm.execute_notebook(
                str(notebook), str(out),
                parameters={"config_path": str(config.source),
                            "reconciliation_id": reconciliation_id, "people_csv": PEOPLE_CSV,
                            **(parameters or {})},
                progress_bar=False, cwd=str(config.base_dir), kernel_name="python3",
                # The kernel's chatter on stderr (a TCP transport warning, "KeyboardInterrupt caught"
                # when it is stopped after a failed cell) would break the
                # one-line-on-stderr contract that schedulers read.
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
                kernel_manager_class=ipc_kernel_manager(),
                # The last cell's outputs are in: the kernel is stopped at once rather than
                # asked to shut down and waited for (about half a second of every report).
                shutdown_kernel="immediate",
            )
    except pm.PapermillExecutionError as exc:
        status, message = "failed", f"report notebook failed: {exc.ename}: {exc.evalue}"
    finally:
        exporter = side.join()
        if out.exists():
            make_private(out)  # papermill writes it with the umask's mode
            # The notebook papermill just wrote is exported as it is in memory (a failed run's
            # is read back from the file, which holds the error papermill recorded).
            write_html(out, folder / "audit.html", exporter, executed)
    summary: RunSummary = {"status": status, "message": message, "version": __version__,
               "durations": {"report": round(time.monotonic() - started, 3)}}
    if status == "ok":
        summary.update(AuditReport.summary_of(config, reconciliation_id))
    write_summary(folder, summary)
    if status != "ok":
        raise StoreError(f"{message} (see {out})")
    return folder


def write_people_csv(config: Config, reconciliation_id: int | None, target: Path) -> int:
    """Everyone's outcome row into `target` (people.csv beside audit.html), through the same
    code as `outcomes --format csv`; returns the number of rows."""
    from civimc_audit.reconcile import OUTCOME_COLUMNS
    from civimc_audit.store.export import write_outcomes_csv

    store, _note = open_for_reading(config.store_file)
    with store:
        # One DuckDB thread: the CSV is written beside the notebook's kernel, which needs the
        # machine's other core; more threads would only contend with it (and sort in more
        # memory).
        store.con.execute("SET threads = 1")
        rec = store.reconciliation(reconciliation_id)
        return write_outcomes_csv(store, rec["id"], target, OUTCOME_COLUMNS)


class _SideWork:
    """people.csv and a warmed-up HTML exporter, made in a thread beside the notebook's run.

    DuckDB's export and most of nbconvert's first export (importing it, compiling its Jinja
    templates) run while the parent only waits for the kernel. The store is opened read-only
    here as in the kernel, which DuckDB allows at once."""

    def __init__(self, config: Config, reconciliation_id: int | None, csv_target: Path):
        import threading

        self._exporter = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        args=(config, reconciliation_id, csv_target))
        self._thread.start()

    def _run(self, config: Config, reconciliation_id: int | None, csv_target: Path) -> None:
        try:
            # A scheduled run whose reconcile step failed has no rows to list: its report
            # says so.
            with contextlib.suppress(CivimcError):
                write_people_csv(config, reconciliation_id, csv_target)
            self._exporter = html_exporter(warm=True)
        except BaseException as exc:  # re-raised in the parent by join()
            self._error = exc

    def join(self):
        """The exporter, once people.csv is written (a failure is raised here)."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._exporter


# What nbconvert's HTMLExporter does to its rendered page (from_notebook_node) by parsing it
# whole with BeautifulSoup, done here on the template's own markup instead (see focusable_page).
_SCRIPT_OR_STYLE = re.compile(r"(<script\b.*?</script\s*>|<style\b.*?</style\s*>)",
                              re.DOTALL | re.IGNORECASE)
_DIV_CLASS = re.compile(r'<div class="([^"]*)"')
_IMG_WITHOUT_ALT = re.compile(r"<img\b(?![^>]*\balt=)", re.IGNORECASE)
_FOCUSABLE = {"jp-Cell-inputWrapper", "jp-OutputArea-output"}
_NO_ALT = "No description has been provided for this image"


def focusable_page(page: str) -> str:
    """nbconvert's finishing touches to a page its lab template rendered: every cell's input
    and output area gets tabindex="0" (keyboard focus) and an image without alternative text
    nbconvert's placeholder. nbconvert does this by parsing and re-serialising the whole page
    with BeautifulSoup's pure-Python parser, about half a second of every million-person
    report; here the template's `<div class="…">` tags are edited in place, outside script
    and style blocks (whose text is not markup), which parses to the same document."""
    def focus(match: re.Match) -> str:
        return (match.group(0) + ' tabindex="0"'
                if _FOCUSABLE.intersection(match.group(1).split()) else match.group(0))

    parts = _SCRIPT_OR_STYLE.split(page)
    for i in range(0, len(parts), 2):  # the even pieces are outside <script> and <style>
        parts[i] = _IMG_WITHOUT_ALT.sub(f'<img alt="{_NO_ALT}"', _DIV_CLASS.sub(focus, parts[i]))
    return "".join(parts)


def html_exporter(warm: bool = False):
    """nbconvert's HTML exporter without code cells or prompts; `warm` runs it once on an empty
    notebook so its templates are compiled before the real export."""
    import_nbformat_quickly()
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.exporters.templateexporter import TemplateExporter
    from nbconvert.filters.highlight import Highlight2HTML
    from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

    class PageExporter(HTMLExporter):
        """HTMLExporter.from_notebook_node (nbconvert 7) with its BeautifulSoup pass done by
        focusable_page."""

        def from_notebook_node(self, nb, resources=None, **kw):
            langinfo = nb.metadata.get("language_info", {})
            lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
            self.register_filter("highlight_code", self.filters.get(
                "highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self)))
            resources = self._init_resources(resources)
            self.register_filter("filter_data_type", WidgetsDataTypeFilter(
                notebook_metadata=self._nb_metadata, parent=self, resources=resources))
            page, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
            return focusable_page(page), resources

    exporter = PageExporter(exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    if warm:
        exporter.from_notebook_node(nbformat.v4.new_notebook())
    return exporter


def write_html(notebook: Path, target: Path, exporter=None, nb=None) -> None:
    """The executed notebook (`nb`, else read from `notebook`) as a standalone HTML page
    without code cells."""
    import_nbformat_quickly()
    import nbformat

    if nb is None:
        nb = nbformat.read(str(notebook), as_version=4)
    body, _ = (exporter or html_exporter()).from_notebook_node(nb)
    write_atomic(target, body)
