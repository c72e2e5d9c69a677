"""`civimc-audit init`: a commented config file with every key, its default and what it does.

Only the two required settings are live lines (empty, so the file is refused until they are
filled in); every other key is commented out with its default, or with an example and "unset by
default" where it has none. The README's config section is the source of these words.
"""

from __future__ import annotations

from pathlib import Path

from civimc_audit.errors import UsageError

TEMPLATE = '''\
# civimc-audit configuration (see the README for every key).
# Fill in the two REQUIRED values; every other key is optional and shown commented out with its
# default (or an example, marked "unset by default"). Secrets never go in this file: set
# CIVIMC_CIVICRM_PASSWORD, CIVIMC_CIVICRM_WRITE_PASSWORD and CIVIMC_MAILCHIMP_API_KEY in the
# environment. Relative paths are relative to this file's folder.

[civicrm]
# The group to audit, by name (civicrm_group.name) or by id (then delete group_name).
group_name = ""                 # REQUIRED: e.g. "newsletter" (or set group_id instead)
# group_id = 42                 # unset by default: the group's id instead of its name
# host = "127.0.0.1"            # the database server
# port = 3306
# socket = "/run/mysqld/mysqld.sock"  # unset by default: a Unix socket instead of host/port
# database = "civicrm"
# user = "civimc_reader"        # needs nothing but SELECT on the civicrm_* tables
# write_user = "civimc_writer"  # unset by default: used only when applying an approved plan
# timezone = "Europe/London"    # unset by default: only for old sites with DATETIME history dates
# on_hold_when_cleaned = false  # apply: removed because Mailchimp cleaned the address => also put on hold

[mailchimp]
list_id = ""                    # REQUIRED: the audience id, e.g. "a1b2c3d4e5"
# base_url = "http://127.0.0.1:8765/3.0"  # unset by default: https://<dc>.api.mailchimp.com/3.0 from the key
# max_connections = 5           # concurrent API connections, 1-10 (Mailchimp allows 10)
# retries = 6                   # retries on 429, 5xx, bodiless 403, timeouts and dropped connections
# timeout = 120.0               # seconds per API call (Mailchimp's own limit is 120)

[store]
# path = "data/audit.duckdb"    # the audit store (one DuckDB file)
# runs_dir = "data/runs"        # run folders: reports, summary.json, apply backups
# lock_wait_seconds = 30        # a command that writes to the store waits this long for another
#                               # to finish, then exits 2 naming it (one writer at a time)

[policy]                        # both off by default, so the default predicts the sync extension
# honor_civicrm_consent = false # do-not-email / opted-out / deceased => unsubscribe or do not add
# tie_winner = "civicrm"        # who wins when both changed in the same second ("civicrm" or "mailchimp")
# date_basis = "last_changed"   # or "status_change": where Mailchimp's activity feed shows its later
#                               # date was a profile edit, decide by its last change of status

[schedule]                      # used by `civimc-audit run`
# max_removals = 50             # unset by default: more removals (either side) than this => exit 1
# max_removal_percent = 5.0     # unset by default: more than this % of the people in the group => exit 1
# fail_on_cannot_sync = false   # true: any cannot_sync => exit 1
# max_interest_removals = 20    # unset by default: more interest removals (group or interest) => exit 1
# max_snapshot_age_hours = 24   # unset by default: a snapshot used is older than this => exit 1
# keep_runs_days = 90           # unset by default (keep everything): prune older runs and snapshots
# auto_approve = []             # standing approvals for `run --apply`, e.g. ["add_to_mailchimp"]

# [interests]                   # optional: Mailchimp interest id (10 hex digits) = CiviCRM group id
# "9f8e7d6c5b" = 17             # each mapping predicted by rules I1-I6 (`outcomes --interests`)
'''


def write_template(path: str | Path) -> Path:
    """Write the template to `path`; refuses to overwrite anything there."""
    path = Path(path)
    if path.exists():
        raise UsageError(f"{path} already exists; not overwriting it (move it away or pick "
                         "another path)")
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: folder {path.parent} does not exist")
    try:
        with path.open("x", encoding="utf-8") as out:
            out.write(TEMPLATE)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
