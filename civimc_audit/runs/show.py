"""The audit notebook's first section under `civimc-audit run`, kept apart from the pipeline so
that the notebook's first cell imports nothing heavy when it is no scheduled run."""

from __future__ import annotations

from pathlib import Path


def show_run(run_dir: str | None) -> None:
    """The first section of the audit notebook under `run`: status, steps, thresholds and
    changes since the previous run. Stops the notebook if a step before the report failed."""
    if not run_dir:
        return
    from IPython.display import HTML, display

    from civimc_audit.common.summary import SUMMARY_NAME, from_json
    from civimc_audit.errors import RunStepFailed
    from civimc_audit.runs.section import run_section_html

    summary = from_json((Path(run_dir) / SUMMARY_NAME).read_text(encoding="utf-8"))
    display(HTML(run_section_html(summary)))
    if summary.get("failed_step"):
        raise RunStepFailed(f"the run failed at step {summary['failed_step']}: "
                            f"{summary['message']}")
