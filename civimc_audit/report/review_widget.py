"""The interactive review table of notebooks/review.ipynb (ipywidgets).

Filters (outcome, rule, reason, flag, system, decision, date range, text), a sort, a list of the
matching rows to select from, and buttons to approve or reject the selection or everything
matching the filters, with a note. The reviewer's name is asked once, at the top. Every click
goes straight to the store through review.decide (with who and when); the store is opened only
for that moment, so the CLI keeps working while the notebook is open.
"""

from __future__ import annotations

import html

import ipywidgets as W
import pandas as pd

from civimc_audit.changes.plan import get_plan, items_frame
from civimc_audit.changes.review import decide, filter_items
from civimc_audit.config import NOTEBOOK_CONFIG_HINT, load_config
from civimc_audit.errors import CivimcError
from civimc_audit.store import open_store
from civimc_audit.store.lock import open_for_reading, writer_lock

# The table's columns: (heading, width). The widths add up to 100% of the notebook's width, so
# the table never scrolls sideways on a laptop; long text (the reason above all) wraps in its
# column instead of squeezing the others.
COLUMNS = [("Item", "4.5%"), ("Decision", "7%"), ("Outcome", "11%"), ("Rule", "4%"),
           ("Who", "9%"), ("Email", "13%"), ("Mailchimp", "9%"), ("CiviCRM", "9%"),
           ("Flags", "8%"), ("Reason", "17.5%"), ("Reviewer / note", "8%")]
LABEL = {"description_width": "initial"}  # labels as wide as their words, never cut off
SORTS = {"removals and flagged first": ["priority", "item_id"], "email": ["email"],
         "latest change": ["changed"], "outcome": ["outcome", "item_id"], "item": ["item_id"]}
TABLE_CSS = """<style>
table.civimc-review { table-layout: fixed; width: 100%; border-collapse: collapse;
  font-size: 12px; line-height: 1.35; }
table.civimc-review th, table.civimc-review td { text-align: left !important;
  vertical-align: top; padding: 2px 4px; white-space: normal; overflow-wrap: break-word;
  line-height: 1.35;
  border-bottom: 1px solid #ddd; }
</style>"""


def _text(value) -> str:
    """A cell's text: blank for None/NaN/NaT (never the word None)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, float) and value != value:
        return ""
    return str(value)


def _codes(value) -> str:
    """Codes with a break opportunity after each underscore, so a narrow column wraps them
    between words (remove_from_civicrm_group), not inside one."""
    return _text(value).replace("_", "_\u200b")


def _when(status, changed) -> str:
    date = "" if changed is None or pd.isna(changed) else f"{changed:%Y-%m-%d %H:%M}"
    return " ".join(p for p in (_text(status), date) if p)


def items_html(frame: pd.DataFrame, limit: int = 200) -> str:
    """The rows as an escaped HTML table that fits the notebook's width (names and emails are
    text, never markup; empty cells are blank)."""
    head = "".join(f'<th style="width:{w}">{html.escape(h)}</th>' for h, w in COLUMNS)
    body = []
    for r in frame.head(limit).to_dict("records"):
        note = " — ".join(p for p in (_text(r.get("reviewer")), _text(r.get("note"))) if p)
        cells = [_text(r.get("item_id")), _text(r.get("decision")), _codes(r.get("outcome")),
                 _text(r.get("rule")), _text(r.get("display_name")), _text(r.get("email")),
                 _when(r.get("mailchimp_status"), r.get("mailchimp_changed")),
                 _when(r.get("civicrm_status"), r.get("civicrm_changed")),
                 _codes(r.get("flags")).replace(" ", ", "), _text(r.get("reason")), note]
        body.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    more = (f"<p>… and {len(frame) - limit} more (narrow the filters)</p>"
            if len(frame) > limit else "")
    return (TABLE_CSS + f'<table class="civimc-review"><thead><tr>{head}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table>" + more)


class ReviewTable:
    """One plan's items, filtered and sorted, with decision buttons."""

    def __init__(self, config_path: str | None = None, plan_id: int | None = None,
                 reviewer: str = ""):
        # No path: found as the CLI finds it ($CIVIMC_CONFIG, the working directory, the
        # project root); a wrong one is reported in the notebook's words, not the CLI's flags.
        self.config = load_config(config_path, hint=NOTEBOOK_CONFIG_HINT)
        # Reads never wait for a writer (an apply, a scheduled run): they use the read copy.
        store, _note = open_for_reading(self.config.store_file)
        with store:
            self.plan = get_plan(store, plan_id)
        self.reviewer = W.Text(value=reviewer, description="Reviewer",
                               placeholder="your name (asked once)", style=LABEL,
                               layout=W.Layout(width="360px"))
        self.frame = pd.DataFrame()
        self.reload()
        f = self.frame

        def choices(col, split=False):
            values = f[col].dropna()
            if split:
                values = values.str.split().explode().dropna()
            return sorted(v for v in set(values) if v)

        wide, narrow = W.Layout(width="300px"), W.Layout(width="240px")
        self.outcome = W.SelectMultiple(options=choices("outcome"), description="Outcome", rows=4,
                                        style=LABEL, layout=W.Layout(width="330px"))
        self.rule = W.SelectMultiple(options=choices("rule"), description="Rule", rows=4,
                                     style=LABEL, layout=W.Layout(width="140px"))
        self.reason = W.Dropdown(options=["", *choices("reason_code")], description="Reason",
                                 style=LABEL, layout=wide)
        self.flag = W.Dropdown(options=["", *choices("flags", split=True)], description="Flag",
                               style=LABEL, layout=narrow)
        self.target = W.Dropdown(options=["", "mailchimp", "civicrm"], description="System",
                                 style=LABEL, layout=W.Layout(width="180px"))
        self.decided = W.Dropdown(options=["", "undecided", "approved", "rejected"],
                                  description="Decision", style=LABEL,
                                  layout=W.Layout(width="190px"))
        self.since = W.DatePicker(description="Changed from", style=LABEL)
        self.until = W.DatePicker(description="to", style=LABEL)
        self.text = W.Text(description="Search", placeholder="name, email or reason",
                           style=LABEL, layout=wide)
        self.sort = W.Dropdown(options=list(SORTS), description="Sort", style=LABEL,
                               layout=W.Layout(width="300px"))
        self.descending = W.Checkbox(description="descending", value=False, indent=False)
        self.rows = W.SelectMultiple(description="Select", rows=10, style=LABEL,
                                     layout=W.Layout(width="98%"))
        self.note = W.Text(description="Note", placeholder="optional, stored with the decision "
                           "(cleared after each decision)", style=LABEL,
                           layout=W.Layout(width="98%"))
        self.status = W.HTML()
        self.table = W.HTML()
        buttons = []
        for label, decision, scope in (("Approve selected", "approved", "selected"),
                                       ("Reject selected", "rejected", "selected"),
                                       ("Approve all matching", "approved", "matching"),
                                       ("Reject all matching", "rejected", "matching")):
            b = W.Button(description=label, layout=W.Layout(width="auto"),
                         button_style="success" if decision == "approved" else "danger")
            b.on_click(lambda _b, d=decision, s=scope: self.click(d, s))
            buttons.append(b)
        self.buttons = buttons
        for w in (self.outcome, self.rule, self.reason, self.flag, self.target, self.decided,
                  self.since, self.until, self.text, self.sort, self.descending):
            w.observe(lambda _change: self.refresh(), names="value")
        self.refresh()

    # data ------------------------------------------------------------------------------------
    def reload(self) -> None:
        store, _note = open_for_reading(self.config.store_file)
        with store:
            self.plan = get_plan(store, self.plan.id)
            self.frame = items_frame(store, self.plan.id)

    def matching(self) -> pd.DataFrame:
        got = filter_items(
            self.frame, outcome=list(self.outcome.value), rule=list(self.rule.value),
            reason=self.reason.value or None, flag=self.flag.value or None,
            target=self.target.value or None, decided_as=self.decided.value or None,
            since=self.since.value, until=None if self.until.value is None
            else pd.Timestamp(self.until.value) + pd.Timedelta(days=1), text=self.text.value)
        return got.sort_values(SORTS[self.sort.value], ascending=not self.descending.value,
                               kind="stable")

    def refresh(self) -> None:
        rows = self.matching()
        self.rows.options = [(f"#{r.item_id} {r.decision:<9} {r.outcome} {r.email or ''}",
                              int(r.item_id)) for r in rows.itertuples()]
        self.table.value = items_html(rows)
        counts = self.frame["decision"].value_counts().to_dict()
        state = "frozen: no more decisions" if self.plan.frozen else "open"
        self.status.value = html.escape(
            f"plan {self.plan.id} ({state}): {len(rows)} of {len(self.frame)} items shown; "
            + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    # decisions -------------------------------------------------------------------------------
    def click(self, decision: str, scope: str) -> int:
        """Record `decision` for the selected rows or every matching row; returns how many."""
        ids = list(self.rows.value) if scope == "selected" else \
            self.matching()["item_id"].tolist()
        try:
            with writer_lock(self.config, "review notebook"), \
                    open_store(self.config.store_file) as store:
                n = decide(store, self.plan.id, ids, decision, self.reviewer.value,
                           note=self.note.value.strip() or None, via="notebook")
        except CivimcError as exc:
            self.status.value = f"<b>Not saved:</b> {html.escape(str(exc))}"
            return 0
        self.note.value = ""  # a note belongs to one decision: never carried to the next
        self.reload()
        self.refresh()
        self.status.value += html.escape(f" — saved: {n} {decision} by {self.reviewer.value}")
        return n

    def widget(self) -> W.Widget:
        def row(*children):  # wraps onto the next line rather than overflowing
            return W.HBox(list(children), layout=W.Layout(flex_flow="row wrap", width="100%"))

        filters = W.VBox([row(self.outcome, self.rule, W.VBox([row(self.reason, self.flag),
                                                               row(self.target, self.decided)])),
                          row(self.since, self.until, self.text),
                          row(self.sort, self.descending)], layout=W.Layout(width="100%"))
        return W.VBox([self.reviewer, filters, self.status, self.rows, self.note,
                       row(*self.buttons), self.table],
                      layout=W.Layout(width="100%"))
