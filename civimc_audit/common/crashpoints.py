"""Named crash points, for tests that SIGKILL a command at an exact moment.

`CIVIMC_TEST_DIE_AT="<point>:<n>"` kills this process (SIGKILL, no clean-up at all) at the nth
pass of that point; `"<point>:<n>:pause"` instead waits there for a test to kill it from
outside. Unset (always, outside tests), a crash point does nothing.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

DIE_ENV = "CIVIMC_TEST_DIE_AT"
_passes: Counter = Counter()


def checkpoint(name: str) -> None:
    """Let tests kill this process at a named point (see the module docstring)."""
    spec = os.environ.get(DIE_ENV)
    if not spec:
        return
    point, nth, how = (spec.split(":") + ["1", "die"])[:3]
    if point == name:
        _passes[name] += 1
        if _passes[name] == int(nth or 1):
            if how == "pause":
                print(f"paused at {name}", flush=True)
                while True:
                    time.sleep(1)
            os.kill(os.getpid(), signal.SIGKILL)
