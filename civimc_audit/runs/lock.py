"""The lock that keeps scheduled runs from overlapping.

`runs/.lock` is an OS lock (common/oslock.py) held for the whole run: a second run while one is
in progress is refused with `RunLocked`, naming the holder's pid, host and start time. The
kernel releases the lock when the run's process ends, however it ends, so a run that crashed or
was killed never blocks the next one (`[schedule] lock_stale_hours` is no longer needed and is
ignored).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from civimc_audit.common.oslock import OSLock, Owner, read_owner
from civimc_audit.errors import LockHeld, RunLocked

LOCK_NAME = ".lock"


@dataclass
class RunLock:
    """`with RunLock(runs_dir):` holds the lock for the block; refuses with `RunLocked`."""

    folder: Path
    info: Owner | None = None

    def __post_init__(self) -> None:
        self._lock = OSLock(self.path, "run")

    @property
    def path(self) -> Path:
        return Path(self.folder) / LOCK_NAME

    def holder(self) -> Owner | None:
        """The owner record in the lock file (None when no run holds it or left one)."""
        return read_owner(self.path)

    def acquire(self) -> Owner:
        try:
            self.info = self._lock.acquire()
        except LockHeld as held:
            who = held.owner
            owner = (f"pid {who.pid} on {who.host}, started {who.since:%Y-%m-%d %H:%M:%S}Z"
                     if who is not None else "owner not recorded yet")
            raise RunLocked(f"another run is in progress ({owner}; lock {self.path}); "
                            "this run was not started") from None
        return self.info

    def release(self) -> None:
        self._lock.release()
        self.info = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
