"""The command line: one thin command per library function (see README for each command).

Every foreseeable failure is a `CivimcError`; `main` maps it to one line on stderr and the
exit code of DESIGN.md, in this one place.
"""

from __future__ import annotations

import json
import sys

import click

from . import __version__
from .config import OUTCOME_CODES, load_config
from .errors import CivimcError, MailchimpError, exit_code_for
from .store import Store


class Context:
    """Lazily loaded configuration shared by the commands."""

    def __init__(self, config_path):
        self.config_path = config_path
        self._config = None

    @property
    def config(self):
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def store(self, read_only=False):
        return Store(self.config.store_file, read_only=read_only)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="Config file (default: $CIVIMC_CONFIG or ./civimc-audit.toml).")
@click.version_option(__version__, prog_name="civimc-audit")
@click.pass_context
def cli(ctx, config_path):
    """Audit a CiviCRM mailing group against a Mailchimp audience, then review and apply."""
    ctx.obj = Context(config_path)


@cli.command()
@click.pass_obj
def check(obj):
    """Connect to both systems and check access, the group and the audience."""
    from .check import check as run_check

    for line in run_check(obj.config):
        click.echo(line, err=line.startswith("warning:"))


@cli.command()
@click.option("--civicrm-only", is_flag=True, help="Snapshot only the CiviCRM group.")
@click.option("--mailchimp-only", is_flag=True, help="Snapshot only the Mailchimp audience.")
@click.option("--incremental", is_flag=True,
              help="Mailchimp: read only members changed since the previous complete snapshot.")
@click.pass_obj
def snapshot(obj, civicrm_only, mailchimp_only, incremental):
    """Take a complete snapshot of each side into the store."""
    from .civicrm.reader import snapshot_civicrm
    from .mailchimp.reader import snapshot_mailchimp

    if civicrm_only and mailchimp_only:
        raise click.UsageError("--civicrm-only and --mailchimp-only exclude each other")
    progress = sys.stderr.isatty()
    with obj.store() as store:
        if not mailchimp_only:
            snap = snapshot_civicrm(obj.config.civicrm, store, progress=progress)
            click.echo(_snapshot_line(snap))
            if snap.meta.get("is_mailing_list") is False:
                from .words import mailing_list_warning

                click.echo(mailing_list_warning(snap.meta.get("group_id"),
                                                snap.meta.get("group_title")), err=True)
        if not civicrm_only:
            snap = snapshot_mailchimp(obj.config.mailchimp, store, progress=progress,
                                      incremental=incremental)
            click.echo(_snapshot_line(snap))
            if snap.status != "complete":
                raise MailchimpError(f"Mailchimp snapshot {snap.id} is incomplete and will not "
                                     f"be reconciled: {snap.message}")


def _snapshot_line(snap) -> str:
    counts = ", ".join(f"{k.split('_', 1)[1]}={v}" for k, v in snap.row_counts.items())
    state = "" if snap.status == "complete" else f" [{snap.status}: {snap.message}]"
    return f"{snap.source} snapshot {snap.id} taken {snap.taken_at:%Y-%m-%d %H:%M:%S}Z: {counts}{state}"


@cli.command()
@click.option("--civicrm-snapshot", type=int, help="CiviCRM snapshot id (default: latest).")
@click.option("--mailchimp-snapshot", type=int, help="Mailchimp snapshot id (default: latest).")
@click.pass_obj
def reconcile(obj, civicrm_snapshot, mailchimp_snapshot):
    """Run the rules over the latest complete snapshots; print counts per outcome."""
    from .reconcile import reconcile as run_reconcile
    from .words import OUTCOME_ORDER

    with obj.store() as store:
        rec = run_reconcile(store, obj.config.policy, civicrm_snapshot_id=civicrm_snapshot,
                            mailchimp_snapshot_id=mailchimp_snapshot)
    click.echo(f"reconciliation {rec['id']} (civicrm snapshot {rec['civicrm_snapshot_id']}, "
               f"mailchimp snapshot {rec['mailchimp_snapshot_id']})")
    for outcome in OUTCOME_ORDER:
        click.echo(f"  {outcome:<27} {rec['counts'].get(outcome, 0)}")


@cli.command()
@click.option("--run", "run_id", type=int, help="Reconciliation id (default: latest).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@click.option("--outcome", type=click.Choice(OUTCOME_CODES), help="Only this outcome.")
@click.pass_obj
def outcomes(obj, run_id, fmt, outcome):
    """Print the per-person outcome rows."""
    from .reconcile import outcome_frame

    with obj.store(read_only=True) as store:
        frame = outcome_frame(store, run_id, outcome=outcome)
    for col in ("mailchimp_changed", "civicrm_changed"):
        frame[col] = frame[col].map(lambda v: "" if v is None or v != v
                                    else f"{v:%Y-%m-%dT%H:%M:%SZ}")
    frame["contact_id"] = frame["contact_id"].astype("Int64")
    if fmt == "csv":
        click.echo(frame.to_csv(index=False), nl=False)
    elif fmt == "json":
        records = json.loads(frame.to_json(orient="records"))
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
    else:
        shown = frame.drop(columns=["reason"]).astype(object).fillna("")
        click.echo(shown.to_string(index=False) if len(shown) else "(no rows)")


@cli.command()
@click.option("--run", "run_id", type=int, help="Reconciliation id (default: latest).")
@click.pass_obj
def report(obj, run_id):
    """Run notebooks/audit.ipynb headless into data/runs/<UTC timestamp>/."""
    from .report import run_report

    folder = run_report(obj.config, reconciliation_id=run_id)
    click.echo(f"report: {folder / 'audit.html'}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--list-id", default="a1b2c3d4e5", show_default=True)
@click.option("--api-key", default=None,
              help="Key the emulator accepts (default: $CIVIMC_MAILCHIMP_API_KEY or a demo key).")
@click.option("--members", type=click.Path(exists=True, dir_okay=False),
              help="JSON array of members to load.")
def emulator(host, port, list_id, api_key, members):
    """Serve the Mailchimp emulator in the foreground (no Mailchimp account needed)."""
    import os

    from .config import ENV_MAILCHIMP_API_KEY
    from .emulator.__main__ import main as emulator_main

    argv = ["--host", host, "--port", str(port), "--list-id", list_id]
    api_key = api_key or os.environ.get(ENV_MAILCHIMP_API_KEY)
    if api_key:
        argv += ["--api-key", api_key]
    if members:
        argv += ["--members", members]
    raise SystemExit(emulator_main(argv))


@cli.command()
@click.option("--apply", "apply_", is_flag=True,
              help="Apply the items [schedule] auto_approve allows (standing approvals).")
@click.option("--reuse-snapshots", is_flag=True,
              help="Reconcile the latest complete snapshots instead of taking new ones.")
@click.pass_obj
def run(obj, apply_, reuse_snapshots):
    """The scheduled pipeline: snapshot, reconcile, report into data/runs/<UTC timestamp>/.

    Exit 0 all well, 1 a [schedule] threshold was crossed, 2 configuration (or another run is
    in progress), 3 a source system failed; the reason is one line here and in summary.json."""
    import signal

    from .runner import run_scheduled

    def stop(signum, _frame):  # systemd/Airflow stop a job with SIGTERM: record it, unlock
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    result = run_scheduled(obj.config, apply=apply_, reuse_snapshots=reuse_snapshots,
                           progress=sys.stderr.isatty(),
                           on_warning=lambda m: click.echo(f"civimc-audit: warning: {m}",
                                                           err=True))
    click.echo(f"run {result.folder.name}: {result.status}: {result.message}")
    click.echo(f"summary: {result.folder / 'summary.json'}")
    click.echo(f"report: {result.folder / 'audit.html'}")


def main(argv=None) -> int:
    """Console entry point: run the CLI, mapping our errors to one line and an exit code."""
    try:
        cli.main(args=argv, prog_name="civimc-audit", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("civimc-audit: aborted", err=True)
        return 2
    except click.ClickException as exc:
        exc.show()
        return 2
    except CivimcError as exc:
        click.echo(f"civimc-audit: {exc}", err=True)
        return exit_code_for(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
