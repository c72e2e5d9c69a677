"""civimc-audit: audit, review and apply the reconciliation of a CiviCRM group with a Mailchimp
audience.

The public API, one name per step of the flow (config → snapshots → reconcile → plan → review →
freeze → apply → verify, and the scheduled run and reports around them). Names are imported on
first use, so `import civimc_audit` (and the CLI's start) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    # configuration and errors
    "Config": "civimc_audit.config",
    "load_config": "civimc_audit.config",
    "NOTEBOOK_CONFIG_HINT": "civimc_audit.config",
    "find_config_path": "civimc_audit.config",
    "CivimcError": "civimc_audit.errors",
    "ConfigError": "civimc_audit.errors",
    "UsageError": "civimc_audit.errors",
    "StoreError": "civimc_audit.errors",
    "SourceError": "civimc_audit.errors",
    "CiviCRMError": "civimc_audit.errors",
    "MailchimpError": "civimc_audit.errors",
    # the store and the sources
    "Store": "civimc_audit.store",
    "Snapshot": "civimc_audit.store",
    "export_snapshot": "civimc_audit.store.export",
    "snapshot_civicrm": "civimc_audit.civicrm.reader",
    "snapshot_mailchimp": "civimc_audit.mailchimp.reader",
    "check": "civimc_audit.check",
    "CheckResult": "civimc_audit.check",
    # reconciliation
    "reconcile": "civimc_audit.reconcile",
    "outcome_frame": "civimc_audit.reconcile",
    # changes
    "Plan": "civimc_audit.changes.plan",
    "build_plan": "civimc_audit.changes.plan",
    "get_plan": "civimc_audit.changes.plan",
    "plan_for": "civimc_audit.changes.plan",
    "plan_summary": "civimc_audit.changes.plan",
    "items_frame": "civimc_audit.changes.plan",
    "decide": "civimc_audit.changes.review",
    "decide_matching": "civimc_audit.changes.review",
    "filter_items": "civimc_audit.changes.review",
    "export_csv": "civimc_audit.changes.review",
    "import_csv": "civimc_audit.changes.review",
    "freeze": "civimc_audit.changes.review",
    "apply_plan": "civimc_audit.changes.apply",
    "ApplyResult": "civimc_audit.changes.apply",
    "journal_frame": "civimc_audit.changes.apply",
    "open_store": "civimc_audit.store",
    "verify": "civimc_audit.changes.verify",
    "ApplySession": "civimc_audit.changes.session",
    "VerifyResult": "civimc_audit.changes.verify",
    # reports and scheduled runs
    "AuditReport": "civimc_audit.report.audit",
    "html_table": "civimc_audit.report.audit",
    "interactive_table": "civimc_audit.report.audit",
    "offline_tables": "civimc_audit.report.audit",
    "where_html": "civimc_audit.report.audit",
    "SECTIONS": "civimc_audit.report.audit",
    "run_report": "civimc_audit.report.audit",
    "show_interests": "civimc_audit.report.interests",
    "ReviewTable": "civimc_audit.report.review_widget",
    "items_html": "civimc_audit.report.review_widget",
    "results_table": "civimc_audit.report.apply_results",
    "results_chart_png": "civimc_audit.report.apply_results",
    "apply_lines": "civimc_audit.report.apply_results",
    "verify_lines": "civimc_audit.report.apply_results",
    "run_scheduled": "civimc_audit.runs.pipeline",
    "run_in_notebook": "civimc_audit.runs.pipeline",
    "show_run": "civimc_audit.runs.show",
    "RunResult": "civimc_audit.runs.pipeline",
}

__all__ = [
    "__version__",
    "Config",
    "load_config",
    "NOTEBOOK_CONFIG_HINT",
    "find_config_path",
    "CivimcError",
    "ConfigError",
    "UsageError",
    "StoreError",
    "SourceError",
    "CiviCRMError",
    "MailchimpError",
    "Store",
    "Snapshot",
    "export_snapshot",
    "snapshot_civicrm",
    "snapshot_mailchimp",
    "check",
    "CheckResult",
    "reconcile",
    "outcome_frame",
    "Plan",
    "build_plan",
    "get_plan",
    "plan_for",
    "plan_summary",
    "items_frame",
    "decide",
    "decide_matching",
    "filter_items",
    "export_csv",
    "import_csv",
    "freeze",
    "apply_plan",
    "ApplyResult",
    "journal_frame",
    "open_store",
    "verify",
    "VerifyResult",
    "ApplySession",
    "AuditReport",
    "html_table",
    "interactive_table",
    "offline_tables",
    "where_html",
    "SECTIONS",
    "run_report",
    "show_interests",
    "ReviewTable",
    "items_html",
    "results_table",
    "results_chart_png",
    "apply_lines",
    "verify_lines",
    "run_scheduled",
    "run_in_notebook",
    "show_run",
    "RunResult",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'civimc_audit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # what a type checker and an IDE see
    from civimc_audit.changes.apply import ApplyResult, apply_plan, journal_frame
    from civimc_audit.changes.plan import (
        Plan,
        build_plan,
        get_plan,
        items_frame,
        plan_for,
        plan_summary,
    )
    from civimc_audit.changes.review import (
        decide,
        decide_matching,
        export_csv,
        filter_items,
        freeze,
        import_csv,
    )
    from civimc_audit.changes.session import ApplySession
    from civimc_audit.changes.verify import VerifyResult, verify
    from civimc_audit.check import CheckResult, check
    from civimc_audit.civicrm.reader import snapshot_civicrm
    from civimc_audit.config import NOTEBOOK_CONFIG_HINT, Config, find_config_path, load_config
    from civimc_audit.errors import (
        CiviCRMError,
        CivimcError,
        ConfigError,
        MailchimpError,
        SourceError,
        StoreError,
        UsageError,
    )
    from civimc_audit.mailchimp.reader import snapshot_mailchimp
    from civimc_audit.reconcile import outcome_frame, reconcile
    from civimc_audit.report.apply_results import (
        apply_lines,
        results_chart_png,
        results_table,
        verify_lines,
    )
    from civimc_audit.report.audit import (
        SECTIONS,
        AuditReport,
        html_table,
        interactive_table,
        offline_tables,
        run_report,
        where_html,
    )
    from civimc_audit.report.interests import show_interests
    from civimc_audit.report.review_widget import ReviewTable, items_html
    from civimc_audit.runs.pipeline import RunResult, run_in_notebook, run_scheduled, show_run
    from civimc_audit.store import Snapshot, Store, open_store
    from civimc_audit.store.export import export_snapshot
