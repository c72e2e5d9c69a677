"""An apply's results for people: items per system and journal state, as a table and a chart
(the apply notebook's)."""

from __future__ import annotations

import pandas as pd

from civimc_audit.changes.apply import ApplyResult


def results_table(result: ApplyResult) -> pd.DataFrame:
    """Items per system and journal state (the apply notebook's table and chart)."""
    items = result.items.assign(state=result.items["journal_state"].fillna("not sent"))
    return items.groupby(["target", "state"]).size().unstack(fill_value=0)


def results_chart_png(result: ApplyResult) -> bytes:
    """The results as a stacked bar chart (PNG bytes, no display backend needed)."""
    import io

    from matplotlib.figure import Figure

    table = results_table(result)
    fig = Figure(figsize=(7, 2.5))
    ax = fig.add_subplot()
    left = None
    for state in table.columns:
        ax.barh(table.index, table[state], left=left, label=state)
        left = table[state] if left is None else left + table[state]
    ax.set_xlabel("items")
    ax.set_title(f"plan {result.plan.id}: items by state")
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return buf.getvalue()
