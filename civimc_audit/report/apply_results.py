"""An apply's and a verify's results for people: the lines `apply` and `verify` print (and the
apply notebook shows), and items per system and journal state as a table and a chart."""

from __future__ import annotations

import json

import pandas as pd

from civimc_audit.changes.apply import ApplyResult
from civimc_audit.changes.verify import VerifyResult
from civimc_audit.common.codes import INTEREST_OUTCOME_ORDER, OUTCOME_ORDER

# The columns describe reads of an item.
DESCRIBED = ("payload", "email", "target", "action", "interest_id", "interest_name")


def describe(row) -> str:
    """One item as a line: system, action, person and what is sent."""
    payload = json.loads(row["payload"])
    who = row["email"] or ""
    interest = row.get("interest_id")
    if isinstance(interest, str) and interest:
        name = row.get("interest_name") or interest
        if row["target"] == "mailchimp":
            return (f"mailchimp {row['action']:<17} {who} -> "
                    f"{'in' if payload['interests'].get(interest) else 'not in'} '{name}'")
        contact = (f"contact {payload['contact_id']}" if payload.get("contact_id") is not None
                   else "the contact this plan creates")
        return (f"civicrm   {row['action']:<17} {contact} {who} (group {payload['group_id']}, "
                f"interest '{name}')")
    if row["target"] == "mailchimp":
        return f"mailchimp {row['action']:<17} {who} -> {payload['status']}"
    if row["action"] == "create_contact":
        return f"civicrm   create_contact    {who} (new contact, added to group {payload['group_id']})"
    return (f"civicrm   {row['action']:<17} contact {payload['contact_id']} {who} "
            f"(group {payload['group_id']})")


# describe() as SQL over the items (the same text), for the dry run's line per item: a million
# items described one by one in Python took seconds (issue 18).
_DESCRIBE_SQL = """
SELECT concat('  would send: ', CASE
    WHEN coalesce(interest_id, '') <> '' AND target = 'mailchimp'
        THEN concat('mailchimp ', pad, ' ', who, ' -> ',
                    CASE WHEN coalesce(json_extract(payload, concat('$.interests."', interest_id,
                                                                    '"'))::VARCHAR
                                       NOT IN ('false', 'null', '0', '""', '[]', '{}'),
                                       false)
                         THEN 'in' ELSE 'not in' END, ' ''', iname, '''')
    WHEN coalesce(interest_id, '') <> ''
        THEN concat('civicrm   ', pad, ' ',
                    CASE WHEN json_extract_string(payload, '$.contact_id') IS NOT NULL
                         THEN concat('contact ', json_extract_string(payload, '$.contact_id'))
                         ELSE 'the contact this plan creates' END,
                    ' ', who, ' (group ', json_extract_string(payload, '$.group_id'),
                    ', interest ''', iname, ''')')
    WHEN target = 'mailchimp'
        THEN concat('mailchimp ', pad, ' ', who, ' -> ',
                    coalesce(json_extract_string(payload, '$.status'), 'None'))
    WHEN action = 'create_contact'
        THEN concat('civicrm   create_contact    ', who, ' (new contact, added to group ',
                    json_extract_string(payload, '$.group_id'), ')')
    ELSE concat('civicrm   ', pad, ' contact ', json_extract_string(payload, '$.contact_id'),
                ' ', who, ' (group ', json_extract_string(payload, '$.group_id'), ')')
    END) AS line
FROM (SELECT *, coalesce(email, '') AS who,
             concat(action, repeat(' ', greatest(17 - length(action), 0))) AS pad,
             coalesce(nullif(interest_name, ''), interest_id) AS iname
      FROM items)
ORDER BY n
"""


def describe_lines(frame: pd.DataFrame) -> list[str]:
    """`  would send: ` and describe(item) for each item of `frame`, in its order, computed by
    DuckDB (an in-memory connection of its own) over the frame's described columns."""
    import duckdb
    import pyarrow as pa

    if frame.empty:
        return []
    items = pa.table({"n": pa.array(range(len(frame)), pa.int64()),
                      **{c: pa.array(frame[c], pa.string(), from_pandas=True)
                         for c in DESCRIBED}})
    with duckdb.connect() as con:
        con.register("items", items)
        lines = con.sql(_DESCRIBE_SQL).to_arrow_table().column("line")
    return lines.to_pylist()


def apply_lines(result: ApplyResult) -> list[str]:
    """What an apply did (or, as a dry run, would do), then its verify's lines."""
    items, to_send = result.items, result.to_send
    head = (f"plan {result.plan.id} (sha256 {(result.plan.frozen_hash or '')[:12]}…): {len(items)} "
            "approved items")
    if not result.execute:
        lines = [f"dry run of {head}; nothing is sent (add --execute to send)"]
        lines += describe_lines(to_send)
        done = len(items) - len(to_send)
        if done:
            lines.append(f"  {done} items already finished by an earlier apply")
        if not to_send.empty:
            lines.append("  people changed at either side since the snapshots will be "
                         "skipped as stale")
        return lines
    if result.run_id is None:
        lines = [f"{head}; all finished by earlier applies: nothing to send"]
    else:
        lines = [f"applied {head}; run {result.run_id}, files in {result.folder}"]
    lines += _state_lines(result)
    if result.verify is not None:
        lines += verify_lines(result.verify)
    return lines


def _state_lines(result: ApplyResult) -> list[str]:
    """Items per journal state, then each stale and each failed item with why."""
    items = result.items
    lines = ["  " + ", ".join(f"{k} {v}" for k, v in sorted(result.counts().items()))]
    for state, label in (("stale", "skipped as stale (changed since the snapshot; run a new "
                                   "audit for them)"),
                         ("failed", "failed")):
        rows = items[items["journal_state"] == state]
        if rows.empty:
            continue
        lines.append(f"  {len(rows)} {label}:")
        for _, r in rows.iterrows():
            why = ": ".join(str(x) for x in (r["journal_title"], r["journal_detail"])
                            if isinstance(x, str) and x)
            lines.append(f"    item {r['item_id']} {r['target']} {r['action']} "
                         f"{r['email'] or ''} — {why}")
    return lines


def verify_lines(result: VerifyResult) -> list[str]:
    """The fresh reconciliation's outcomes, then the applied items still needing a change."""
    rec = result.reconciliation
    todo = {o: n for o, n in rec["counts"].items() if o != "no_change" and n}
    lines = [f"verify: reconciliation {rec['id']} of fresh snapshots (civicrm "
             f"{rec['civicrm_snapshot_id']}, mailchimp {rec['mailchimp_snapshot_id']}): "
             + (", ".join(f"{o} {todo[o]}" for o in OUTCOME_ORDER if o in todo)
                or "nothing to do")]
    if result.interests:
        lines.append("  interest rows still to change: "
                     + ", ".join(f"{o} {result.interests[o]}" for o in INTEREST_OUTCOME_ORDER
                                 if result.interests.get(o))
                     + " (see `civimc-audit outcomes --interests`; they are plan items to "
                       "review, approve and apply like the subscription changes)")
    if result.plan_id is None:
        lines.append("  no plan has been applied yet")
    elif result.remaining.empty:
        lines.append(f"  plan {result.plan_id}: all {result.applied} applied items agree on "
                     "both sides")
    else:
        lines.append(f"  plan {result.plan_id}: {len(result.remaining)} of {result.applied} "
                     "applied items still need a change:")
        for r in result.remaining.to_dict("records"):
            lines.append(f"    item {r['item_id']} {r['target']} {r['action']} "
                         f"{r['email']}: now {r['outcome']} — {r['reason']}")
    return lines


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
