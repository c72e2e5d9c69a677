"""The command line: one thin command per library function (see README for each command).

Every foreseeable failure is a `CivimcError`; `main` maps it to one line on stderr and the
exit code of docs/design.md, in this one place.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from civimc_audit import __version__
from civimc_audit.common.codes import (
    FLAG_CODES,
    INTEREST_OUTCOME_CODES,
    OUTCOME_CODES,
    RULE_CODES,
)
from civimc_audit.common.files import private_umask
from civimc_audit.config import load_config, one_line, redact
from civimc_audit.errors import CivimcError, MailchimpError, exit_code_for

CONFIG_HELP = "Config file (default: $CIVIMC_CONFIG or ./civimc-audit.toml)."
NO_CONFIG = ("emulator",)  # commands that read no config


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

    @contextmanager
    def writing(self, command: str):
        """The store, under its writer lock for the whole block (store/lock.py)."""
        from civimc_audit.store import open_store
        from civimc_audit.store.lock import writer_lock

        with writer_lock(self.config, command), open_store(self.config.store_file) as store:
            yield store

    @contextmanager
    def reading(self):
        """The store read-only; while a writer holds it, its read copy, said on stderr."""
        from civimc_audit.store.lock import open_for_reading

        store, note = open_for_reading(self.config.store_file)
        if note is not None:
            click.echo(f"civimc-audit: note: {note.words()}", err=True)
        with store:
            yield store


def _config_after_command(ctx, _param, value):
    """`civimc-audit COMMAND --config PATH`: the same as before the command (this one wins)."""
    if value is not None:
        ctx.find_object(Context).config_path = value
    return value


class CivimcGroup(click.Group):
    """Gives every command (but those in NO_CONFIG) its own --config, so it may also follow the
    command name, and shows it in the command's --help."""

    def add_command(self, cmd, name=None):
        if cmd.name not in NO_CONFIG and not any(p.name == "config" for p in cmd.params):
            cmd.params.append(click.Option(["--config"], type=click.Path(dir_okay=False),
                                           expose_value=False, callback=_config_after_command,
                                           help=CONFIG_HELP))
        super().add_command(cmd, name)


def json_option(what: str):
    """--json: print one JSON document (README "JSON output") instead of lines."""
    return click.option("--json", "as_json", is_flag=True,
                        help=f"Print {what} as one JSON document (keys in the README).")


@click.group(cls=CivimcGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help=CONFIG_HELP)
@click.version_option(__version__, prog_name="civimc-audit")
@click.pass_context
def cli(ctx, config_path):
    """Audit a CiviCRM mailing group against a Mailchimp audience, then review and apply."""
    ctx.obj = Context(config_path)


@cli.command()
@json_option("every check and its result")
@click.pass_obj
def check(obj, as_json):
    """Connect to both systems and check access, the group and the audience."""
    from civimc_audit.check import check as run_check
    from civimc_audit.report.words import check_line

    result = run_check(obj.config)
    if as_json:
        from civimc_audit.report.documents import check_document, dump

        click.echo(dump(check_document(result, check_line)))
    else:
        for entry in result.entries:
            if entry.status != "error":
                click.echo(check_line(entry), err=entry.status == "warning")
    if result.error is not None:
        raise result.error


@cli.command()
@click.option("--civicrm-only", is_flag=True, help="Snapshot only the CiviCRM group.")
@click.option("--mailchimp-only", is_flag=True, help="Snapshot only the Mailchimp audience.")
@click.option("--incremental", is_flag=True,
              help="Mailchimp: read only members changed since the previous complete snapshot.")
@json_option("the snapshots taken")
@click.pass_obj
def snapshot(obj, civicrm_only, mailchimp_only, incremental, as_json):
    """Take a complete snapshot of each side into the store."""
    # Imported where used: a Mailchimp-only snapshot (an incremental one takes a second or two)
    # needs neither the CiviCRM reader nor pandas, which report.words brings.
    if civicrm_only and mailchimp_only:
        raise click.UsageError("--civicrm-only and --mailchimp-only exclude each other")
    progress = sys.stderr.isatty()
    civi = mc = None
    warnings = []
    with obj.writing("snapshot") as store:
        if not mailchimp_only:
            from civimc_audit.civicrm.reader import snapshot_civicrm

            civi = snapshot_civicrm(obj.config.civicrm, store, progress=progress,
                                    interests=obj.config.interests)
            if civi.meta.get("is_mailing_list") is False:
                from civimc_audit.report.words import mailing_list_warning

                warnings.append(mailing_list_warning(civi.meta.get("group_id"),
                                                     civi.meta.get("group_title")))
            if not as_json:
                click.echo(_snapshot_line(civi))
                for warning in warnings:
                    click.echo(warning, err=True)
        if not civicrm_only:
            from civimc_audit.mailchimp.reader import snapshot_mailchimp

            mc = snapshot_mailchimp(obj.config.mailchimp, store, progress=progress,
                                    incremental=incremental)
            if not as_json:
                click.echo(_snapshot_line(mc))
        if civi is not None and mc is not None and "complete" == civi.status == mc.status:
            from civimc_audit.runs.evidence import take_evidence

            found = take_evidence(obj.config, store, civi.id, mc.id, progress=progress)
            mc = store.snapshot(mc.id)
            if not as_json:
                click.echo(found.line())
    if as_json:
        from civimc_audit.report.documents import dump, snapshot_document

        click.echo(dump(snapshot_document(civi, mc, warnings)))
    if mc is not None and mc.status != "complete":
        raise MailchimpError(f"Mailchimp snapshot {mc.id} is incomplete and will not "
                             f"be reconciled: {mc.message}")


def _snapshot_line(snap) -> str:
    counts = ", ".join(f"{k.split('_', 1)[1]}={v}" for k, v in snap.row_counts.items())
    state = "" if snap.status == "complete" else f" [{snap.status}: {snap.message}]"
    odd = snap.meta.get("odd_members") or {}
    if odd:  # stored as sent, each cannot be synced: say so rather than let it pass unseen
        state += "; members " + ", ".join(f"{n} {words}" for words, n in odd.items())
    return f"{snap.source} snapshot {snap.id} taken {snap.taken_at:%Y-%m-%d %H:%M:%S}Z: {counts}{state}"


@cli.command()
@click.option("--civicrm-snapshot", type=int, help="CiviCRM snapshot id (default: latest).")
@click.option("--mailchimp-snapshot", type=int, help="Mailchimp snapshot id (default: latest).")
@click.pass_obj
def reconcile(obj, civicrm_snapshot, mailchimp_snapshot):
    """Run the rules over the latest complete snapshots; print counts per outcome."""
    from civimc_audit.common.codes import INTEREST_OUTCOME_ORDER, OUTCOME_ORDER
    from civimc_audit.reconcile import interest_counts
    from civimc_audit.reconcile import reconcile as run_reconcile

    with obj.writing("reconcile") as store:
        rec = run_reconcile(store, obj.config.policy, civicrm_snapshot_id=civicrm_snapshot,
                            mailchimp_snapshot_id=mailchimp_snapshot)
        interests = interest_counts(store, rec["id"])
    click.echo(f"reconciliation {rec['id']} (civicrm snapshot {rec['civicrm_snapshot_id']}, "
               f"mailchimp snapshot {rec['mailchimp_snapshot_id']})")
    for outcome in OUTCOME_ORDER:
        click.echo(f"  {outcome:<27} {rec['counts'].get(outcome, 0)}")
    if interests:  # [interests] mapped: the interest rows too (outcomes --interests)
        click.echo("interest rows (civimc-audit outcomes --interests):")
        for outcome in INTEREST_OUTCOME_ORDER:
            click.echo(f"  {outcome:<27} {interests.get(outcome, 0)}")


ALL_OUTCOME_CODES = tuple(dict.fromkeys((*OUTCOME_CODES, *INTEREST_OUTCOME_CODES)))


@cli.command()
@click.option("--run", "run_id", type=int, help="Reconciliation id (default: latest).")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@click.option("--outcome", type=click.Choice(ALL_OUTCOME_CODES), help="Only this outcome.")
@click.option("--interests", is_flag=True,
              help="The interest rows (one per person and mapped interest, rules I1-I6).")
@json_option("the reconciliation and its rows")
@click.pass_obj
def outcomes(obj, run_id, fmt, outcome, interests, as_json):
    """Print the per-person outcome rows (or, with --interests, the interest rows)."""
    from civimc_audit.reconcile import (
        INTEREST_COLUMNS,
        OUTCOME_COLUMNS,
        interest_frame,
        outcome_frame,
    )

    codes = INTEREST_OUTCOME_CODES if interests else OUTCOME_CODES
    if outcome and outcome not in codes:
        raise click.UsageError(f"--outcome {outcome} is not an outcome of "
                               f"{'interest' if interests else 'subscription'} rows; "
                               f"one of: {', '.join(codes)}")
    with obj.reading() as store:
        rec = store.reconciliation(run_id)
        if fmt == "csv" and not interests and not as_json:
            # Written by DuckDB (the same text as outcomes_csv_text; issue 18), never a
            # million-row frame.
            from civimc_audit.store.export import copy_outcomes_csv

            copy_outcomes_csv(store, rec["id"], OUTCOME_COLUMNS,
                              lambda piece: click.echo(piece, nl=False), outcome=outcome)
            return
        frame = (interest_frame if interests else outcome_frame)(store, rec["id"], outcome=outcome)
    if as_json:
        from civimc_audit.report.documents import dump, outcomes_document

        columns = INTEREST_COLUMNS if interests else OUTCOME_COLUMNS
        click.echo(dump(outcomes_document(rec, outcome, frame, columns)))
        return
    from civimc_audit.store.export import outcome_text_frame, outcomes_csv_text

    if interests and fmt != "json":  # true / false, or empty: the member has no entry (I1)
        frame["mailchimp_interest"] = (frame["mailchimp_interest"].astype("boolean").astype(object)
                                       .map({True: "true", False: "false"}).fillna(""))
    if fmt == "csv":
        click.echo(outcomes_csv_text(frame), nl=False)
        return
    frame = outcome_text_frame(frame)
    if fmt == "json":
        records = json.loads(frame.to_json(orient="records"))
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
    else:
        shown = frame.astype(object).fillna("")
        shown = shown[[c for c in shown.columns if c != "reason"] + ["reason"]]
        click.echo(shown.to_string(index=False, justify="left") if len(shown) else "(no rows)")


@cli.command()
@click.option("--run", "run_id", type=int, help="Reconciliation id (default: latest).")
@click.pass_obj
def report(obj, run_id):
    """Run notebooks/audit.ipynb headless into data/runs/<UTC timestamp>/."""
    from civimc_audit.report.audit import run_report

    with obj.reading():  # only to say so when a writer holds the store and its copy is read
        pass
    folder = run_report(obj.config, reconciliation_id=run_id)
    click.echo(f"report: {folder / 'audit.html'}")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--list-id", default="a1b2c3d4e5", show_default=True)
@click.option("--api-key", default=None,
              help="Key the emulator accepts (default: $CIVIMC_MAILCHIMP_API_KEY or a demo key).")
@click.option("--members", type=click.Path(exists=True, dir_okay=False),
              help="JSON array of members to load (email_address, status, last_changed, "
                   "merge_fields; see the README).")
@click.option("--state", type=click.Path(dir_okay=False),
              help="Keep the audience in this JSON file: resumed from it when it exists, "
                   "saved on every change.")
def emulator(host, port, list_id, api_key, members, state):
    """Serve the Mailchimp emulator in the foreground (no Mailchimp account needed).

    Prints its address and the API key it accepts.
    """
    import os

    from civimc_audit.config import ENV_MAILCHIMP_API_KEY
    from civimc_sandbox.emulator.__main__ import main as emulator_main

    argv = ["--host", host, "--port", str(port), "--list-id", list_id]
    api_key = api_key or os.environ.get(ENV_MAILCHIMP_API_KEY)
    if api_key:
        argv += ["--api-key", api_key]
    if members:
        argv += ["--members", members]
    if state:
        argv += ["--state", state]
    raise SystemExit(emulator_main(argv))


@cli.command()
@click.option("--run", "run_id", type=int, help="Reconciliation id (default: latest).")
@click.option("--new", "new", is_flag=True,
              help="Build a new plan even if the reconciliation has an open one.")
@click.option("--show", is_flag=True, help="Summarise the latest plan instead of building one.")
@click.option("--plan", "plan_id", type=int, help="With --show: this plan (default: latest).")
@json_option("the plan and its counts")
@click.pass_obj
def plan(obj, run_id, new, show, plan_id, as_json):
    """Build a change set from the latest reconciliation (or summarise one with --show).

    A reconciliation that already has an open (not frozen) plan gets that plan back, not a
    second one; --new builds another anyway."""
    from civimc_audit.changes.plan import plan_for, plan_summary, summary_lines

    if show and (new or run_id is not None):
        raise click.UsageError("--show summarises a plan (--plan ID); --run and --new build one")
    built = False
    with (obj.reading() if show else obj.writing("plan")) as store:
        if not show:
            found, built = plan_for(store, run_id, new=new)
            plan_id = found.id
        if as_json:
            from civimc_audit.report.documents import dump, plan_document

            click.echo(dump(plan_document(plan_summary(store, plan_id), built=built)))
            return
        for line in summary_lines(store, plan_id):
            click.echo(line)
    if not show:
        if not built:
            click.echo(f"plan {plan_id} already open for reconciliation "
                       f"{found.reconciliation_id}; nothing built (use --new to build another)")
        click.echo(f"plan {plan_id}")


@cli.command()
@click.option("--plan", "plan_id", type=int, help="Plan id (default: latest).")
@click.option("--export", "export_path", type=click.Path(dir_okay=False),
              help="Write the items to this CSV for editing.")
@click.option("--import", "import_path", type=click.Path(dir_okay=False, exists=True),
              help="Record the decisions of an edited CSV.")
@click.option("--reviewer", help="Who made the decisions (with --import).")
@click.pass_obj
def review(obj, plan_id, export_path, import_path, reviewer):
    """Review through a CSV: --export F, edit decision/note, then --import F --reviewer NAME."""
    from civimc_audit.changes.review import export_csv, import_csv

    if bool(export_path) == bool(import_path):
        raise click.UsageError("give exactly one of --export F or --import F")
    with (obj.reading() if export_path else obj.writing("review --import")) as store:
        if export_path:
            n = export_csv(store, plan_id, export_path)
            click.echo(f"{n} items written to {export_path}; fill in decision (approve/reject)"
                       " and note, then `review --import`")
        else:
            counts = import_csv(store, import_path, reviewer, plan_id)
            withdrawn = (f", {counts['withdrawn']} of them withdrawn from an earlier decision"
                         if counts["withdrawn"] else "")
            click.echo(f"recorded {counts['approved']} approved, {counts['rejected']} rejected "
                       f"({counts['undecided']} undecided{withdrawn})")


@cli.command()
@click.option("--plan", "plan_id", type=int, help="Plan id (default: latest).")
@click.option("--all", "everything", is_flag=True, help="Every item of the plan.")
@click.option("--outcome", multiple=True, type=click.Choice(ALL_OUTCOME_CODES),
              help="Items of this outcome (an interest item has its interest outcome).")
@click.option("--rule", multiple=True, type=click.Choice(RULE_CODES, case_sensitive=False),
              help="Items decided by this rule.")
@click.option("--flag", multiple=True, type=click.Choice(FLAG_CODES), help="Items carrying this flag.")
@click.option("--target", type=click.Choice(["mailchimp", "civicrm"]), help="Items for this system.")
@click.option("--item", "items", multiple=True, type=int, help="This item id.")
@click.option("--interest", "interest", multiple=True,
              help="Items of this mapped Mailchimp interest (its id or name; `none` for the "
                   "subscription group's items).")
@click.option("--undecided", is_flag=True, help="Only items not decided yet.")
@click.option("--reject", is_flag=True, help="Reject instead of approve.")
@click.option("--note", help="A note stored with each decision.")
@click.option("--reviewer", help="Who decides (or freezes).")
@click.option("--freeze", "do_freeze", is_flag=True, help="Freeze the plan (hash its approved items).")
@click.option("--allow-pending", is_flag=True,
              help="With --freeze: re-send Mailchimp compliance refusals of resubscribes "
                   "flagged needs_confirmation as pending (emails each a confirmation request).")
@click.pass_obj
def approve(obj, plan_id, everything, outcome, rule, flag, target, items, interest, undecided,
            reject, note, reviewer, do_freeze, allow_pending):
    """Approve (or --reject) items by rule, or --freeze the plan."""
    import getpass

    from civimc_audit.changes.plan import get_plan
    from civimc_audit.changes.review import decide, decide_matching, freeze

    with obj.writing("approve") as store:
        if do_freeze:
            frozen = freeze(store, plan_id, reviewer or getpass.getuser(),
                            allow_pending=allow_pending)
            click.echo(f"plan {frozen.id} frozen: sha256 {frozen.frozen_hash}; reviewers "
                       f"{', '.join(frozen.frozen_reviewers)}")
            return
        if allow_pending:
            raise click.UsageError("--allow-pending goes with --freeze")
        decision = "rejected" if reject else "approved"
        if items:
            n = decide(store, plan_id, items, decision, reviewer, note=note, via="cli")
        else:
            n = decide_matching(store, plan_id, decision, reviewer, everything=everything,
                                note=note, outcome=outcome, rule=rule, flag=flag, target=target,
                                interest=interest,
                                decided_as=["undecided"] if undecided else None)
            if not n:
                words = _filter_words(everything, outcome, rule, flag, target, undecided,
                                      interest)
                click.echo(f"no item of plan {get_plan(store, plan_id).id} matches {words}"
                           f"; nothing {decision}")
                return
        click.echo(f"{n} items {decision}")


def _filter_words(everything, outcome, rule, flag, target, undecided, interest=()) -> str:
    """The filters given to approve, as they were typed."""
    if everything:
        return "--all"
    words = [f"--{name} {v}" for name, values in (("outcome", outcome), ("rule", rule),
                                                  ("flag", flag), ("target", [target] if target
                                                                   else []),
                                                  ("interest", interest))
             for v in values]
    return " ".join(words + (["--undecided"] if undecided else []))


@cli.command("apply")
@click.argument("plan_id", required=False, type=int)
@click.option("--execute", is_flag=True, help="Send the changes (default: a dry run).")
@click.option("--no-verify", is_flag=True, help="Skip the fresh snapshots and check at the end.")
@json_option("what was (or would be) sent and how it ended")
@click.pass_obj
def apply_cmd(obj, plan_id, execute, no_verify, as_json):
    """Apply a frozen plan (default: the latest); a dry run unless --execute."""
    from civimc_audit.changes.apply import apply_plan
    from civimc_audit.errors import NeedsPerson
    from civimc_audit.report.apply_results import apply_lines

    result = apply_plan(obj.config, plan_id, execute=execute, progress=sys.stderr.isatty(),
                        verify_after=not no_verify)
    if as_json:
        from civimc_audit.report.documents import apply_document, dump

        click.echo(dump(apply_document(result)))
    else:
        lines = apply_lines(result)
        if lines:  # one write: a dry run of a million items prints as many lines
            click.echo("\n".join(lines))
    if result.needs_person:
        raise NeedsPerson(f"plan {result.plan.id}: some items were skipped, failed or still "
                          "disagree (listed above)")


@cli.command()
@click.option("--plan", "plan_id", type=int, help="Plan whose applied items to check "
              "(default: the latest applied).")
@json_option("the fresh reconciliation and the items still needing a change")
@click.pass_obj
def verify(obj, plan_id, as_json):
    """Take fresh snapshots, reconcile, and report applied items still needing a change."""
    from civimc_audit.changes.verify import verify as run_verify
    from civimc_audit.errors import NeedsPerson
    from civimc_audit.report.apply_results import verify_lines

    result = run_verify(obj.config, plan_id, progress=sys.stderr.isatty())
    if as_json:
        from civimc_audit.report.documents import dump, verify_document

        click.echo(dump(verify_document(result)))
    else:
        for line in verify_lines(result):
            click.echo(line)
    if result.needs_person:
        raise NeedsPerson(f"{len(result.remaining)} applied items still need a change")


@cli.command()
@click.argument("snapshot_id", type=int)
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet",
              show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Folder to write into (default: <runs>/exports/<source>-snapshot-<ID>).")
@click.pass_obj
def export(obj, snapshot_id, fmt, out_dir):
    """Write a snapshot as files (with Mailchimp's import CSV for an audience)."""

    from civimc_audit.store.export import export_snapshot

    with obj.reading() as store:
        snap = store.snapshot(snapshot_id)
        folder = Path(out_dir) if out_dir else (obj.config.runs_path / "exports"
                                                / f"{snap.source}-snapshot-{snap.id}")
        for path in export_snapshot(store, snapshot_id, folder, fmt):
            click.echo(str(path))


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

    from civimc_audit.runs.pipeline import SUMMARY_NAME, ScheduledRun, raise_for_status

    def stop(signum, _frame):  # systemd/Airflow stop a job with SIGTERM: record it, unlock
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    result = ScheduledRun(obj.config, apply=apply_, reuse_snapshots=reuse_snapshots,
                          progress=sys.stderr.isatty(),
                          on_warning=lambda m: click.echo(f"civimc-audit: warning: {m}",
                                                          err=True)).execute()
    # Where the record is, whatever the status: a crossed threshold or a failure is exactly
    # when an operator opens it. The one-line reason and the exit code follow.
    click.echo(f"run {result.folder.name}: {result.status}: {result.message}")
    if apply_:
        from civimc_audit.changes.standing import standing_words

        for line in standing_words(result.summary):
            click.echo(f"  {line}")
    click.echo(f"summary: {result.folder / SUMMARY_NAME}")
    html = result.folder / "audit.html"
    click.echo(f"report: {html}" + ("" if html.exists() else " (not written)"))
    raise_for_status(result)


@cli.command()
@click.argument("path", required=False, type=click.Path(dir_okay=False))
@click.pass_obj
def init(obj, path):
    """Write a commented config template to PATH (default: --config, else ./civimc-audit.toml).

    Every key is there with its default and what it does; fill in the two REQUIRED values.
    Refuses to overwrite an existing file."""
    from civimc_audit.config import DEFAULT_CONFIG_NAME
    from civimc_audit.config_template import write_template

    written = write_template(path or obj.config_path or DEFAULT_CONFIG_NAME)
    click.echo(f"wrote {written}: fill in [civicrm] group_name (or group_id) and [mailchimp] "
               "list_id, set the passwords and the API key in the environment, then "
               "`civimc-audit check`")


def main(argv=None) -> int:
    """Console entry point: run the CLI, mapping our errors to one line and an exit code."""
    private_umask()
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
        click.echo(f"civimc-audit: {redact(str(exc))}", err=True)
        return exit_code_for(exc)
    except Exception as exc:  # a bug: keep the traceback, say where, exit 4 (never 1)
        code = exit_code_for(exc)
        where = write_traceback(exc)
        click.echo(f"civimc-audit: unexpected {type(exc).__name__}: {one_line(exc)}"
                   f" (traceback in {where})", err=True)
        return code
    return 0


def write_traceback(exc: BaseException) -> Path:
    """Write the traceback of an unexpected failure, secrets redacted, to a file only its owner
    can read; returns the path."""
    import tempfile
    import traceback

    from civimc_audit.common.times import run_stamp

    text = redact("".join(traceback.format_exception(exc)))
    fd, name = tempfile.mkstemp(prefix=f"civimc-audit-{run_stamp()}-", suffix=".traceback.txt")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    return Path(name)


if __name__ == "__main__":
    sys.exit(main())
