"""Every exception of the toolkit, and the one place that maps them to exit codes.

Exit codes are a contract with schedulers (docs/design.md): 0 success, 1 the run worked but needs a
person, 2 bad usage or configuration, 3 a source system failed, 4 an unexpected failure (a bug:
the traceback is written to a file and its path printed).

    Exception
    ├── CivimcError                 foreseeable: one line a person can act on (exit 2 unless said)
    │   ├── ConfigError             the config file or environment is missing or malformed
    │   ├── UsageError              a command that cannot work as called (unknown id, …)
    │   │   ├── StoreError          the audit store lacks what the command needs
    │   │   └── StoreBusy           another command holds the store's writer lock
    │   ├── SourceError             a source system failed (exit 3) or refused the config (exit 2)
    │   │   ├── CiviCRMError        the CiviCRM database could not be read or written
    │   │   └── MailchimpError      the Mailchimp API answered with an error or was unreachable
    │   ├── NeedsPerson             the run worked but a person must look (exit 1)
    │   └── RunFailed               a step of a scheduled run failed (carries that step's code)
    ├── ClientUnavailable           internal: the mysql client cannot connect; read another way
    ├── LockHeld                    internal: another process holds an OS lock (common/oslock.py)
    └── RunStepFailed               internal: raised in run.ipynb so papermill marks the stop
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_NEEDS_PERSON = 1
EXIT_USAGE = 2
EXIT_SOURCE = 3
EXIT_UNEXPECTED = 4


class CivimcError(Exception):
    """Base of every foreseeable failure; its message is one line a person can act on."""

    exit_code = EXIT_USAGE


class ConfigError(CivimcError):
    """The configuration file or environment is missing something or is malformed."""


class UsageError(CivimcError):
    """A command was called in a way that cannot work (unknown id, missing snapshot, …)."""


class StoreError(UsageError):
    """The audit store does not hold what the command needs."""


class StoreBusy(UsageError):
    """Another command holds the store's writer lock (exit 2: this one was refused after its
    wait and changed nothing; store/lock.py)."""


class SourceError(CivimcError):
    """A source system (CiviCRM database or Mailchimp API) failed or refused.

    `misconfigured=True` marks a refusal that the configuration causes (wrong credentials, a
    list or database that does not exist): a person must fix the config, so it exits 2.
    """

    exit_code = EXIT_SOURCE

    def __init__(self, message, *args, misconfigured: bool = False, **kwargs):
        super().__init__(message, *args, **kwargs)
        if misconfigured:
            self.exit_code = EXIT_USAGE


class CiviCRMError(SourceError):
    """The CiviCRM database could not be read or written."""


class MailchimpError(SourceError):
    """The Mailchimp API answered with an error or could not be reached."""

    def __init__(self, message, status=None, title=None, detail=None, errors=None, *,
                 misconfigured: bool = False):
        super().__init__(message, misconfigured=misconfigured)
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors  # the problem document's field errors, if any


class NeedsPerson(CivimcError):
    """The run worked but found something a person has to look at (a threshold crossed)."""

    exit_code = EXIT_NEEDS_PERSON


class RunFailed(CivimcError):
    """A step of a scheduled run failed; carries the exit code of the underlying failure."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


class ClientUnavailable(Exception):
    """The command-line client could not connect; read another way."""


class LockHeld(Exception):
    """Another process holds an OS lock; `owner` is its record (None when it has none yet).
    Callers turn it into `StoreBusy` with their own words."""

    def __init__(self, path, owner):
        super().__init__(f"{path} is held" + (f" by pid {owner.pid} on {owner.host}"
                                             if owner is not None else ""))
        self.path = path
        self.owner = owner


class RunStepFailed(Exception):
    """Raised inside the executed notebook so papermill marks where the run stopped."""


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for an exception that ended a command."""
    if isinstance(exc, CivimcError):
        return exc.exit_code
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return EXIT_SOURCE
    return EXIT_UNEXPECTED
