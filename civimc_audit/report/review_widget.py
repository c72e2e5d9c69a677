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
from civimc_audit.config import load_config
from civimc_audit.errors import CivimcError
from civimc_audit.store import open_store
from civimc_audit.store.lock import writer_lock

SHOWN = ["item_id", "decision", "outcome", "rule", "display_name", "email", "mailchimp_status",
         "mailchimp_changed", "civicrm_status", "civicrm_changed", "flags", "reason_code",
         "reason", "reviewer", "note"]
SORTS = {"removals and flagged first": ["priority", "item_id"], "email": ["email"],
         "latest change": ["changed"], "outcome": ["outcome", "item_id"], "item": ["item_id"]}


def items_html(frame: pd.DataFrame, limit: int = 200) -> str:
    """The rows as an escaped HTML table (names and emails are text, never markup)."""
    shown = frame[SHOWN].head(limit).copy()
    for col in ("mailchimp_changed", "civicrm_changed"):
        shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:%Y-%m-%d %H:%M}")
    more = f"<p>… and {len(frame) - limit} more (narrow the filters)</p>" if len(frame) > limit else ""
    return shown.to_html(index=False, escape=True, na_rep="", border=0) + more


class ReviewTable:
    """One plan's items, filtered and sorted, with decision buttons."""

    def __init__(self, config_path: str, plan_id: int | None = None, reviewer: str = ""):
        self.config = load_config(config_path)
        with open_store(self.config.store_file) as store:
            self.plan = get_plan(store, plan_id)
        self.reviewer = W.Text(value=reviewer, description="Reviewer",
                               placeholder="your name (asked once)")
        self.frame = pd.DataFrame()
        self.reload()
        f = self.frame

        def choices(col, split=False):
            values = f[col].dropna()
            if split:
                values = values.str.split().explode().dropna()
            return sorted(v for v in set(values) if v)

        self.outcome = W.SelectMultiple(options=choices("outcome"), description="Outcome", rows=4)
        self.rule = W.SelectMultiple(options=choices("rule"), description="Rule", rows=4)
        self.reason = W.Dropdown(options=["", *choices("reason_code")], description="Reason")
        self.flag = W.Dropdown(options=["", *choices("flags", split=True)], description="Flag")
        self.target = W.Dropdown(options=["", "mailchimp", "civicrm"], description="System")
        self.decided = W.Dropdown(options=["", "undecided", "approved", "rejected"],
                                  description="Decision")
        self.since = W.DatePicker(description="Changed from")
        self.until = W.DatePicker(description="to")
        self.text = W.Text(description="Search", placeholder="name, email or reason")
        self.sort = W.Dropdown(options=list(SORTS), description="Sort")
        self.descending = W.Checkbox(description="descending", value=False)
        self.rows = W.SelectMultiple(description="Select", rows=10,
                                     layout=W.Layout(width="95%"))
        self.note = W.Text(description="Note", placeholder="optional, stored with the decision")
        self.status = W.HTML()
        self.table = W.HTML()
        buttons = []
        for label, decision, scope in (("Approve selected", "approved", "selected"),
                                       ("Reject selected", "rejected", "selected"),
                                       ("Approve all matching", "approved", "matching"),
                                       ("Reject all matching", "rejected", "matching")):
            b = W.Button(description=label,
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
        with open_store(self.config.store_file) as store:
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
                           note=self.note.value or None, via="notebook")
        except CivimcError as exc:
            self.status.value = f"<b>Not saved:</b> {html.escape(str(exc))}"
            return 0
        self.reload()
        self.refresh()
        self.status.value += html.escape(f" — saved: {n} {decision} by {self.reviewer.value}")
        return n

    def widget(self) -> W.Widget:
        filters = W.VBox([W.HBox([self.outcome, self.rule]),
                          W.HBox([self.reason, self.flag, self.target, self.decided]),
                          W.HBox([self.since, self.until, self.text]),
                          W.HBox([self.sort, self.descending])])
        return W.VBox([self.reviewer, filters, self.status, self.rows, self.note,
                       W.HBox(self.buttons), self.table])
