"""The scheduled run's section at the top of its audit report: status, steps, thresholds,
changes since the previous run and standing approvals, as one escaped HTML block.

The notebook shows it while the run is still going (the report is one of its steps), so once
the run has ended `refresh_run_section` puts the final block, every step in its final state,
into the executed notebook and rewrites the HTML. Messages can quote Mailchimp's error details
or people's emails: every text is escaped, never read as Markdown or HTML.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from civimc_audit.common.summary import RunSummary
from civimc_audit.report.audit import html_table

SECTION_CLASS = "civimc-run-section"
CELL_MARK = "show_run(run_dir)"


def _int(value):
    """Counts as whole numbers (never 12.0); blank for none."""
    if value is None or value == "":
        return ""
    return int(value) if isinstance(value, (int, float)) and float(value).is_integer() else value


def _table(rows: list[dict]) -> str:
    return html_table(pd.DataFrame(rows, dtype=object)) if rows else ""


def run_section_html(summary: RunSummary) -> str:
    """The run's section as HTML (every value escaped)."""
    e = html.escape
    parts = [f'<div class="{SECTION_CLASS}">',
             f"<h2>Scheduled run {e(str(summary.get('run', '')))}</h2>",
             f"<p><b>Status: {e(str(summary.get('status', '')))}</b> — "
             f"{e(str(summary.get('message', '')))}</p>"]
    durations = summary.get("durations") or {}
    parts.append(_table([{"Step": s, "State": state,
                          "Seconds": "" if durations.get(s) is None else f"{durations[s]:.1f}"}
                         for s, state in (summary.get("steps") or {}).items()]))
    parts.append(_table([{"Threshold": k, "Limit": _int(v["limit"]), "This run": _int(v["value"]),
                          "Crossed": "yes" if v["crossed"] else ""}
                         for k, v in (summary.get("thresholds") or {}).items()]))
    changes = summary.get("changes_since_previous")
    if changes:
        people = changes.get("people")
        text = f"Since run {changes['previous_run']}"
        if people:
            text += (f": {_int(people['changed_outcome'])} people changed outcome, "
                     f"{_int(people['new'])} appeared, {_int(people['gone'])} are gone")
        parts.append(f"<p>{e(text)}.</p>")
        parts.append(_table([{"Outcome": o, "Previous": _int(v["previous"]),
                              "Now": _int(v["now"]), "Change": _int(v["change"])}
                             for o, v in changes["outcomes"].items()]))
    if summary.get("apply"):
        from civimc_audit.changes.standing import standing_words

        parts.append("<h3>Standing approvals: applied, and waiting for a person</h3><ul>"
                     + "".join(f"<li>{e(line)}</li>" for line in standing_words(summary))
                     + "</ul>")
    return "".join(parts) + "</div>"


def refresh_run_section(folder: Path, summary: RunSummary) -> bool:
    """Put the run's final section into folder/audit.ipynb and rewrite folder/audit.html;
    False when the run has no executed report to refresh."""
    import nbformat

    from civimc_audit.report.audit import write_html

    path = folder / "audit.ipynb"
    if not path.exists():
        return False
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code" or CELL_MARK not in cell.source:
            continue
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if SECTION_CLASS in str(data.get("text/html", "")):
                data["text/html"] = run_section_html(summary)
                data["text/plain"] = "<scheduled run section>"
                nbformat.write(nb, str(path))
                write_html(path, folder / "audit.html")
                return True
    return False
