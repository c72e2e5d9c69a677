"""The toolkit's named exceptions, and the one place that maps them to exit codes.

Exit codes are a contract with schedulers (DESIGN.md): 0 success, 1 the run worked but needs a
person, 2 bad usage or configuration, 3 a source system failed.
"""

EXIT_OK = 0
EXIT_NEEDS_PERSON = 1
EXIT_USAGE = 2
EXIT_SOURCE = 3


class CivimcError(Exception):
    """Base of every foreseeable failure; its message is one line a person can act on."""

    exit_code = EXIT_USAGE


class ConfigError(CivimcError):
    """The configuration file or environment is missing something or is malformed."""


class UsageError(CivimcError):
    """A command was called in a way that cannot work (unknown id, missing snapshot, …)."""


class StoreError(UsageError):
    """The audit store does not hold what the command needs."""


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


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for an exception that ended a command."""
    if isinstance(exc, CivimcError):
        return exc.exit_code
    return EXIT_SOURCE if isinstance(exc, (ConnectionError, TimeoutError)) else EXIT_USAGE
