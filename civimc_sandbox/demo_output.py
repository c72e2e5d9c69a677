"""What `make demo` prints at the end: the five people, the counts, the report, what next.

The five are read back from the reconciliation the demo just made (the real outcome, in the
seed page's words), not from what the seed expects, so the demo shows what the rules did.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from civimc_audit.common.codes import OUTCOME_ORDER
from civimc_audit.config import load_config
from civimc_audit.reconcile import REPORT_COLUMNS, outcome_frame
from civimc_audit.report.words import OUTCOME_HEADLINES, civicrm_words, mailchimp_words, outcome_words
from civimc_audit.store import Store
from civimc_sandbox.seed import SEED, seed_email

if TYPE_CHECKING:
    from civimc_sandbox.demo import Demo

REVIEWER = "demo"


def shown(path: Path) -> str:
    """`path` relative to the working directory when it lies inside it, else absolute."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def seed_table(frame, year: int) -> str:
    by_email = {r["email"]: r for r in frame.to_dict("records")}
    rows = [["Who", "Mailchimp", "CiviCRM", "Outcome"]]
    for person in SEED:
        r = by_email[seed_email(person.first)]
        rows.append([person.first, mailchimp_words(r, year), civicrm_words(r, year),
                     outcome_words(r)])
    return table(rows)


def count_lines(frame) -> list[str]:
    counts = frame["outcome"].value_counts()
    lines = []
    for outcome in OUTCOME_ORDER:
        n = int(counts.get(outcome, 0))
        if n:
            words = OUTCOME_HEADLINES[outcome][0 if n == 1 else 1]
            lines.append(f"  {n:>4} {'person' if n == 1 else 'people'} {words}")
    return lines


def next_commands(demo: Demo) -> list[tuple[str, str]]:
    """The workflow from here, as (command, what it does); each works as printed."""
    review_csv = shown(demo.folder / "review.csv")
    return [
        ("civimc-audit plan", "the outcomes as a plan of changes"),
        (f"civimc-audit review --export {review_csv}", "the plan as a CSV to review"),
        (f"civimc-audit approve --all --reviewer {REVIEWER}", "approve every item (or --outcome …)"),
        (f"civimc-audit approve --freeze --allow-pending --reviewer {REVIEWER}", "freeze it"),
        ("civimc-audit apply", "a dry run"),
        ("civimc-audit apply --execute", "send it, then verify"),
        ("civimc-audit verify", "fresh snapshots: do both sides agree?"),
        ("civimc-audit run", "the scheduled pipeline"),
    ]


def stop_words(demo: Demo) -> str:
    """How to stop, restart and remove this demo's sandbox."""
    if demo.is_default:
        return ("Stop the sandbox with `make demo-stop` (`make demo-start` starts it again, "
                "`make clean`\nalso drops the demo database and its accounts); "
                "`make demo` starts it afresh.")
    folder = shlex.quote(shown(demo.folder))
    return (f"Stop the sandbox with `python -m civimc_sandbox.demo --stop {folder}` (`--start` "
            f"starts it again,\n`--drop` also drops the demo database and its accounts).")


def summary(demo: Demo, year: int, pid: int) -> str:
    config = load_config(demo.config_path)
    with Store(config.store_file, read_only=True) as store:
        frame = outcome_frame(store, columns=REPORT_COLUMNS)
    reports = sorted((demo.folder / "runs").glob("*/audit.html"))
    commands = next_commands(demo)
    width = max(len(c) for c, _ in commands)
    return "\n".join([
        "",
        "The seed's five people:",
        seed_table(frame, year),
        "",
        f"All {len(frame)} people (the five, eight for the interest rules and a generated crowd "
        "with every rule):",
        *count_lines(frame),
        "",
        f"The audit report: {shown(reports[-1])}",
        "",
        f"The sandbox stays up: the Mailchimp emulator serves {config.mailchimp.base_url} "
        f"in the background",
        f"(pid {pid}, its audience kept in {shown(demo.emulator.state_path)}). Go on with:",
        "",
        f"  source {shlex.quote(shown(demo.env_path))}",
        *(f"  {c.ljust(width)}  # {what}" for c, what in commands),
        "",
        "With --allow-pending, resubscribes Mailchimp refuses (\"Member In Compliance State\") "
        "are sent again as",
        "pending, which emails a confirmation request; without it they stay failed and apply "
        "exits 1.",
        "",
        stop_words(demo),
    ])
