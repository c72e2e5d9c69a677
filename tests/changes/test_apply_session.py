"""An apply opens its store, its CiviCRM connections and its Mailchimp client once, whatever
its phases (settling an interrupted run, the drift check, both writers, the journal, verify's
fresh snapshots) need, and closes them at the end."""

from __future__ import annotations

import signal
from collections import Counter

import pytest
from support.apply import journal_states, plan_and_freeze, start_apply
from support.apply_population import load_every_rule
from support.values import TEST_LIST_ID

import civimc_audit.civicrm.db as civicrm_db
import civimc_audit.civicrm.writer as civicrm_writer
import civimc_audit.store.database as store_database
from civimc_audit.changes.apply import apply_plan
from civimc_audit.config import load_config
from civimc_audit.mailchimp.client import MailchimpClient


@pytest.fixture
def opened(monkeypatch):
    """Counts of what is opened: CiviCRM connections (read, write), stores, Mailchimp clients;
    and the connections themselves."""
    counts, conns = Counter(), []

    def counting_connect(settings, *, write=False, **kwargs):
        counts["civicrm write" if write else "civicrm read"] += 1
        conn = real_connect(settings, write=write, **kwargs)
        conns.append(conn)
        return conn

    real_connect = civicrm_db.connect
    monkeypatch.setattr(civicrm_db, "connect", counting_connect)
    monkeypatch.setattr(civicrm_writer, "connect", counting_connect)
    real_store_init = store_database.Store.__init__

    def counting_store(self, *args, **kwargs):
        counts["store"] += 1
        real_store_init(self, *args, **kwargs)

    monkeypatch.setattr(store_database.Store, "__init__", counting_store)
    real_client_init = MailchimpClient.__init__

    def counting_client(self, *args, **kwargs):
        counts["mailchimp client"] += 1
        real_client_init(self, *args, **kwargs)

    monkeypatch.setattr(MailchimpClient, "__init__", counting_client)
    return counts, conns


def test_an_interrupted_apply_resumed_and_verified_opens_everything_once(
        civi_db, emulator, make_config, run_cli, opened):
    load_every_rule(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID)
    config = make_config()
    plan_and_freeze(run_cli, config, "--allow-pending")
    proc = start_apply(config, "civicrm_after_call:1")  # removals made, not journaled
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert "sending" in journal_states(config).values()
    counts, conns = opened
    counts.clear()
    conns.clear()

    result = apply_plan(load_config(config), execute=True, verify_after=True)

    assert set(result.counts()) == {"done"}, result.counts()
    assert result.verify is not None and not result.verify.needs_person
    assert counts == {"store": 1, "civicrm read": 1, "civicrm write": 1,
                      "mailchimp client": 1}, counts
    assert conns and not any(c.open for c in conns)  # closed at the end

