"""The lock that keeps scheduled runs from overlapping.

`runs/.lock` holds the owner's pid, host and start time while a run is in progress, and is
removed when it ends. A lock left behind by a run that crashed is *stale* — its pid is dead (on
this host), or it is older than `[schedule] lock_stale_hours` — and the next run takes it over
with a warning, so a crash never blocks the schedule for good.

Checking and writing `.lock` happen under an `flock` on `runs/.lock.guard` (a file that is never
removed), so two runs starting at the same instant cannot both decide the lock is free or both
take over the same stale lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from civimc_audit.common.files import write_atomic
from civimc_audit.common.times import iso_utc, parse_iso_utc, utcnow
from civimc_audit.errors import RunLocked

LOCK_NAME = ".lock"
GUARD_NAME = ".lock.guard"
DEFAULT_STALE_HOURS = 12.0



@dataclass(frozen=True)
class LockInfo:
    """What a lock file says about its owner."""

    pid: int
    host: str
    started_at: datetime
    token: str
    run: str | None = None

    def to_json(self) -> str:
        return json.dumps({"pid": self.pid, "host": self.host,
                           "started_at": iso_utc(self.started_at),
                           "token": self.token, "run": self.run}) + "\n"

    @classmethod
    def parse(cls, text: str) -> LockInfo | None:
        try:
            data = json.loads(text)
            return cls(int(data["pid"]), str(data["host"]),
                       parse_iso_utc(data["started_at"]),
                       str(data.get("token", "")), data.get("run"))
        except (ValueError, KeyError, TypeError):
            return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def stale_reason(info: LockInfo | None, *, now: datetime, stale_after: timedelta) -> str | None:
    """Why a lock may be taken over, or None while its owner should be left alone."""
    if info is None:
        return "the lock file is unreadable"
    if now - info.started_at > stale_after:
        hours = (now - info.started_at).total_seconds() / 3600
        return f"it is {hours:.1f} hours old (limit {stale_after.total_seconds() / 3600:g})"
    if info.host == socket.gethostname() and not pid_alive(info.pid):
        return f"process {info.pid} is no longer running"
    return None


@dataclass
class RunLock:
    """`with RunLock(runs_dir):` holds the lock for the block; refuses with `RunLocked`."""

    folder: Path
    stale_hours: float = DEFAULT_STALE_HOURS
    run: str | None = None
    on_warning: Callable[[str], None] | None = None
    warnings: list[str] = field(default_factory=list)
    info: LockInfo | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK_NAME

    @contextmanager
    def _guard(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / GUARD_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the flock

    def holder(self) -> LockInfo | None:
        """The current lock's owner as written in the file (None when unlocked)."""
        try:
            return LockInfo.parse(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None

    def acquire(self) -> LockInfo:
        with self._guard():
            if self.path.exists():
                current = self.holder()
                now = utcnow()
                why = stale_reason(current, now=now,
                                   stale_after=timedelta(hours=self.stale_hours))
                if why is None:
                    raise RunLocked(
                        f"another run is in progress (pid {current.pid} on {current.host}, "
                        f"started {current.started_at:%Y-%m-%d %H:%M:%S}Z; lock {self.path}); "
                        "this run was not started")
                owner = f"pid {current.pid} on {current.host}" if current else "unknown owner"
                message = f"took over a stale run lock ({owner}): {why}"
                self.warnings.append(message)
                if self.on_warning:
                    self.on_warning(message)
            info = LockInfo(os.getpid(), socket.gethostname(), utcnow(), uuid.uuid4().hex,
                            self.run)
            write_atomic(self.path, info.to_json())
            self.info = info
            return info

    def release(self) -> None:
        """Remove the lock if it is still ours (a run that was taken over leaves it alone)."""
        if self.info is None:
            return
        with self._guard():
            current = self.holder()
            if current is not None and current.token == self.info.token:
                self.path.unlink(missing_ok=True)
        self.info = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
