"""A test hook: named points where tests kill (or pause) this process, to prove crash safety.

Inert unless the environment variable CIVIMC_TEST_DIE_AT is set, so the product's normal
behaviour never depends on it. `CIVIMC_TEST_DIE_AT=point[:nth[:how]]` acts at the nth pass of
the named point (default the first): how = `die` (default) sends this process SIGKILL (no
clean-up at all, as a power cut or the OOM killer would), how = `pause` prints
"paused at <point>" on stdout and waits there until SIGUSR1 (go on) or a kill.

Points: civicrm_loading (CiviCRM snapshot, rows going into the store), mailchimp_loading
(Mailchimp snapshot, a spool file loaded), reconcile_outcomes (outcomes written, not
committed), freeze (hash computed, plan not yet frozen), apply_backup (backup half written),
civicrm_creating (a new contact inserted, not committed), store_migrated and store_close
(store/database.py), and apply's mailchimp_/civicrm_ before_call, after_call, after_journal
(changes/apply.py), and the same six with `interest_` before them for apply's interest items
(changes/apply_interests.py).
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

DIE_ENV = "CIVIMC_TEST_DIE_AT"
_passes: Counter = Counter()


def checkpoint(name: str) -> None:
    """Die or pause here if CIVIMC_TEST_DIE_AT names this point (see the module docstring)."""
    spec = os.environ.get(DIE_ENV)
    if not spec:
        return
    point, nth, how = (spec.split(":") + ["1", "die"])[:3]
    if point != name:
        return
    _passes[name] += 1
    if _passes[name] != int(nth or 1):
        return
    if how == "pause":
        resumed = threading.Event()
        signal.signal(signal.SIGUSR1, lambda *_: resumed.set())
        print(f"paused at {name}", flush=True)
        while not resumed.wait(0.05):
            pass
        return
    os.kill(os.getpid(), signal.SIGKILL)
