"""One apply's (or verify's) connections, opened once and handed to every phase.

An apply works with the store (plan, journal, backups), a read-only CiviCRM connection (the
settling and drift reads, and verify's snapshot), the CiviCRM writer and the Mailchimp client.
`ApplySession` opens each of them once — the store when the session starts, the others when
first used, so a dry run never connects to CiviCRM — and closes them all when it ends. The
phases take the session, never the config.

The session is opened under the store's writer lock (store/lock.py), taken by the caller.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING

from civimc_audit.civicrm.live import LiveCiviCRM
from civimc_audit.config import Config
from civimc_audit.store import Store, open_store

if TYPE_CHECKING:
    from civimc_audit.civicrm.writer import CiviCRMWriter
    from civimc_audit.mailchimp.client import MailchimpClient

CIVICRM_BATCH = 200  # contacts per CiviCRM write transaction


class ApplySession:
    """The store and, once each is first asked for, the CiviCRM read connection and writer and
    the Mailchimp client; `with ApplySession.open(config) as session:` closes them all."""

    def __init__(self, config: Config, store: Store):
        self.config = config
        self.store = store
        self._civicrm: LiveCiviCRM | None = None
        self._writer: CiviCRMWriter | None = None
        self._mailchimp: MailchimpClient | None = None

    @classmethod
    @contextmanager
    def open(cls, config: Config):
        with open_store(config.store_file) as store:
            session = cls(config, store)
            try:
                yield session
            finally:
                session.close()

    @property
    def civicrm(self) -> LiveCiviCRM:
        """Reads of the live CiviCRM database, over the session's read-only connection."""
        if self._civicrm is None:
            from civimc_audit.civicrm.db import connect
            from civimc_audit.civicrm.reader import SNAPSHOT_READ_TIMEOUT

            def reopen():
                return connect(self.config.civicrm, read_timeout=SNAPSHOT_READ_TIMEOUT)

            self._civicrm = LiveCiviCRM(self.config.civicrm, reopen(), reopen=reopen)
        return self._civicrm

    @property
    def civicrm_writer(self):
        """The CiviCRMWriter, on the write account's connection."""
        if self._writer is None:
            from civimc_audit.civicrm.writer import CiviCRMWriter

            self._writer = CiviCRMWriter(self.config.civicrm, batch_size=CIVICRM_BATCH)
        return self._writer

    @property
    def mailchimp(self):
        """The MailchimpClient (its HTTP connections are kept for the session)."""
        if self._mailchimp is None:
            from civimc_audit.mailchimp.client import MailchimpClient

            self._mailchimp = MailchimpClient(self.config.mailchimp)
        return self._mailchimp

    def mailchimp_writer(self, list_id: str):
        from civimc_audit.mailchimp.writer import MailchimpWriter

        return MailchimpWriter(self.mailchimp, list_id)

    def close(self) -> None:
        """Close what was opened (the store is closed by `open()`)."""
        if self._mailchimp is not None:
            self._mailchimp.close()
            self._mailchimp = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._civicrm is not None:
            self._civicrm.close()
            self._civicrm = None
