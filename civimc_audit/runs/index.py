"""data/runs/index.html: every run with its status and links, and the outcome counts over time.

Rebuilt from the runs' summary.json files at the end of each run, so it always matches what is
on disk (pruned runs disappear from it). Apply folders (apply-plan<ID>-<stamp>/) are not rows of
their own: a run that applied links its apply folder's journal. The page is the jinja2 template
templates/index.html.j2 with autoescape on: messages can quote people's emails, or anything.
"""

from __future__ import annotations

import base64
import io
from functools import cache
from pathlib import Path

import jinja2

from civimc_audit.common.codes import OUTCOME_ORDER
from civimc_audit.common.files import private_dir, write_atomic
from civimc_audit.common.summary import SUMMARY_NAME, RunSummary, read_summary
from civimc_audit.report.words import OUTCOME_LABELS
from civimc_audit.runs.retention import run_folders, run_time

INDEX_NAME = "index.html"
STATUS_COLOURS = {"ok": "#2e7d32", "threshold": "#b26a00", "needs_person": "#b26a00",
                  "failed": "#c62828",
                  "running": "#555555", "interrupted": "#c62828"}


def load_runs(runs_path: Path, current: str | None = None) -> list[tuple[Path, RunSummary]]:
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


def chart_png(runs: list[tuple[Path, RunSummary]]) -> bytes | None:
    """Outcome counts per run over time as a line chart (None until a run has counts)."""
    points = [(when, s["outcomes"]) for f, s in reversed(runs)
              if isinstance(s.get("outcomes"), dict) and (when := run_time(f.name)) is not None]
    if not points:
        return None
    from matplotlib.dates import AutoDateLocator, DateFormatter
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    times = [t for t, _ in points]
    for outcome in OUTCOME_ORDER:
        values = [counts.get(outcome, 0) for _, counts in points]
        if any(values):
            # matplotlib's stubs leave out datetimes, which its date converter takes
            ax.plot(times, values, marker="o",  # type: ignore[arg-type]
                    label=OUTCOME_LABELS.get(outcome, outcome))
    ax.set_ylabel("people")
    ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    # A handful of dated ticks, slanted so they never run into each other, whether the runs
    # are minutes or months apart.
    locator = AutoDateLocator(minticks=3, maxticks=7)
    ax.xaxis.set_major_locator(locator)
    fmt, axis_label = time_axis(times)
    ax.xaxis.set_major_formatter(DateFormatter(fmt))
    ax.set_xlabel(axis_label)
    for label in ax.get_xticklabels():
        label.set_rotation(30)
        label.set_horizontalalignment("right")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize="small")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96)
    return buf.getvalue()


def time_axis(times: list) -> tuple[str, str]:
    """The tick format and axis label for runs spanning these times: clock times within a day
    (the day in the label), days and hours within two months, else dates."""
    span = max(times) - min(times)
    if span.days < 1:
        return "%H:%M:%S" if span.total_seconds() < 600 else "%H:%M", \
            f"run time (UTC) on {min(times):%d %b %Y}"
    if span.days < 60:
        return "%d %b %H:%M", "run time (UTC)"
    return "%d %b %Y", "run date (UTC)"


@cache
def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("civimc_audit.runs", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    return env.get_template("index.html.j2")


def _links(folder: Path, summary: RunSummary) -> list[tuple[str, str]]:
    """(href, label) of the run's files that exist, and of a `run --apply`'s apply folder's
    journal (a sibling of the run's folder: apply-plan<ID>-<stamp>/)."""
    links = [(f"{folder.name}/{name}", label)
             for name, label in (("audit.html", "report"), ("audit.ipynb", "notebook"),
                                 (SUMMARY_NAME, "summary.json"))
             if (folder / name).exists()]
    name = summary.get("apply_folder")
    if isinstance(name, str) and (folder.parent / name / "journal.csv").exists():
        links.append((f"{name}/journal.csv", "applied (journal)"))
    return links


def _row(folder: Path, s: RunSummary) -> dict:
    status = str(s.get("status", "?"))
    counts = s.get("outcomes") or {}
    return {"name": folder.name, "status": status,
            "colour": STATUS_COLOURS.get(status, "#555555"),
            "message": str(s.get("message", "")),
            "removals": (counts.get("remove_from_civicrm_group", 0)
                         + counts.get("unsubscribe_in_mailchimp", 0)) if counts else "",
            "cannot_sync": counts.get("cannot_sync", "") if counts else "",
            "people": sum(counts.values()) if counts else "",
            "links": _links(folder, s)}


def render_index(runs: list[tuple[Path, RunSummary]]) -> str:
    png = chart_png(runs)
    return _template().render(rows=[_row(folder, s) for folder, s in runs],
                              chart_png=base64.b64encode(png).decode() if png else None)


def build_index(runs_path: Path, current: str | None = None) -> Path:
    """Write runs_path/index.html from the run folders on disk; returns its path. `current` is
    the run holding the lock, if any."""
    private_dir(runs_path)
    target = runs_path / INDEX_NAME
    return write_atomic(target, render_index(load_runs(runs_path, current)))
