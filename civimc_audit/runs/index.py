"""data/runs/index.html: every run with its status and links, and the outcome counts over time.

Rebuilt from the runs' summary.json files at the end of each run, so it always matches what is
on disk (pruned runs disappear from it). Apply folders (apply-plan<ID>-<stamp>/) are not rows of
their own: a run that applied links its apply folder's journal. Messages are escaped: they can
quote people's emails.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

from civimc_audit.common.codes import OUTCOME_ORDER
from civimc_audit.common.files import write_atomic
from civimc_audit.runs.retention import run_folders, run_time

INDEX_NAME = "index.html"
STATUS_COLOURS = {"ok": "#2e7d32", "threshold": "#b26a00", "needs_person": "#b26a00",
                  "failed": "#c62828",
                  "running": "#555555", "interrupted": "#c62828"}


def read_summary(folder: Path) -> dict:
    """A run's summary.json, or a stand-in saying why there is none."""
    try:
        return json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"status": "failed", "message": "no summary.json (the run was interrupted)"}
    except ValueError:
        return {"status": "failed", "message": "summary.json is not valid JSON"}


def load_runs(runs_path: Path, current: str | None = None) -> list[tuple[Path, dict]]:
    """(folder, summary) for every run, newest first. While `current` holds the run lock, any
    other run still marked running was killed before it could finish: it is shown as such."""
    runs = []
    for folder in reversed(run_folders(runs_path)):
        summary = read_summary(folder)
        if current and folder.name != current and summary.get("status") == "running":
            summary = {**summary, "status": "interrupted",
                       "message": "the run was killed before it finished (see summary.json)"}
        runs.append((folder, summary))
    return runs


def chart_png(runs: list[tuple[Path, dict]]) -> bytes | None:
    """Outcome counts per run over time as a line chart (None until a run has counts)."""
    points = [(run_time(f.name), s["outcomes"]) for f, s in reversed(runs)
              if isinstance(s.get("outcomes"), dict)]
    if not points:
        return None
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    times = [t for t, _ in points]
    for outcome in OUTCOME_ORDER:
        values = [counts.get(outcome, 0) for _, counts in points]
        if any(values):
            ax.plot(times, values, marker="o", label=outcome)
    ax.set_ylabel("people")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return buf.getvalue()


def _link(folder: Path, name: str, label: str) -> str:
    if not (folder / name).exists():
        return ""
    return f'<a href="{html.escape(folder.name)}/{html.escape(name)}">{label}</a>'


def _apply_link(folder: Path, summary: dict) -> str:
    """A `run --apply`'s apply folder (a sibling of the run's: apply-plan<ID>-<stamp>/)."""
    name = summary.get("apply_folder")
    if not isinstance(name, str) or not (folder.parent / name / "journal.csv").exists():
        return ""
    return f'<a href="{html.escape(name)}/journal.csv">applied (journal)</a>'


def render_index(runs: list[tuple[Path, dict]]) -> str:
    rows = []
    for folder, s in runs:
        status = str(s.get("status", "?"))
        colour = STATUS_COLOURS.get(status, "#555555")
        counts = s.get("outcomes") or {}
        removals = (counts.get("remove_from_civicrm_group", 0)
                    + counts.get("unsubscribe_in_mailchimp", 0)) if counts else ""
        links = " ".join(x for x in (_link(folder, "audit.html", "report"),
                                     _link(folder, "audit.ipynb", "notebook"),
                                     _link(folder, "summary.json", "summary.json"),
                                     _apply_link(folder, s)) if x)
        rows.append(
            "<tr>"
            f"<td>{html.escape(folder.name)}</td>"
            f'<td style="color:{colour};font-weight:bold">{html.escape(status)}</td>'
            f"<td>{html.escape(str(s.get('message', '')))}</td>"
            f"<td>{removals}</td>"
            f"<td>{counts.get('cannot_sync', '') if counts else ''}</td>"
            f"<td>{sum(counts.values()) if counts else ''}</td>"
            f"<td>{links}</td>"
            "</tr>")
    png = chart_png(runs)
    chart = (f'<img alt="outcome counts per run" src="data:image/png;base64,'
             f'{base64.b64encode(png).decode()}">' if png else "<p>No run has counts yet.</p>")
    table = "\n".join(rows) or '<tr><td colspan="7">No runs yet.</td></tr>'
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>civimc-audit runs</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }}
</style></head>
<body>
<h1>civimc-audit runs</h1>
<h2>Outcome counts over time</h2>
{chart}
<h2>Runs (newest first)</h2>
<table>
<thead><tr><th>Run (UTC)</th><th>Status</th><th>Message</th><th>Removals</th>
<th>Cannot sync</th><th>People</th><th>Links</th></tr></thead>
<tbody>
{table}
</tbody></table>
</body></html>
"""


def build_index(runs_path: Path, current: str | None = None) -> Path:
    """Write runs_path/index.html from the run folders on disk; returns its path. `current` is
    the run holding the lock, if any."""
    runs_path.mkdir(parents=True, exist_ok=True)
    target = runs_path / INDEX_NAME
    return write_atomic(target, render_index(load_runs(runs_path, current)))
