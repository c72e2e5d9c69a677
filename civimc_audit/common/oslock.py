"""One lock mechanism: an OS lock on a file, held for the life of a run or an apply.

The lock is an `flock` on a lock file, held by a file descriptor kept open until the holder
releases it. The kernel drops it when that descriptor closes, so a process that dies — even by
SIGKILL — never leaves the lock held: there is no stale lock to detect or take over. While it is
held, the file carries an owner record (command, pid, host, since and a few details) that a
refused caller reads to say who holds it; a record left by a process that died is simply
overwritten by the next holder.

The holder removes the file when it releases the lock. A caller that opened the file just
before it was removed would hold a lock on a file no longer in the folder, so after taking the
lock it checks that the path still names the file it locked, and starts again if not.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from civimc_audit.common.files import private_dir
from civimc_audit.common.times import utcnow
from civimc_audit.errors import LockHeld

_STAMP = "%Y-%m-%dT%H:%M:%SZ"
# A holder writes its record just after taking the lock; a caller refused in that instant
# waits this long for the record before saying the owner is unknown.
RECORD_WAIT = 1.0


@dataclass(frozen=True)
class Owner:
    """Who holds a lock, as its lock file records it."""

    command: str
    pid: int
    host: str
    since: datetime
    details: dict = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"command": self.command, "pid": self.pid, "host": self.host,
                           "since": f"{self.since:{_STAMP}}", "details": self.details}) + "\n"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        """The record in `text`, or None when it is empty or not one."""
        try:
            data = json.loads(text)
            return cls(str(data["command"]), int(data["pid"]), str(data["host"]),
                       datetime.strptime(data["since"], _STAMP), dict(data.get("details") or {}))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


class OSLock:
    """`with OSLock(path, "run"):` holds the lock for the block, or raises `LockHeld`.

    Never waits: a second caller is refused at once, with the holder's record.
    """

    def __init__(self, path: str | Path, command: str, details: dict | None = None):
        self.path = Path(path)
        self.command = command
        self.owner: Owner | None = None
        self._details = dict(details or {})
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> Owner:
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already held by this OSLock")
        private_dir(self.path.parent)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _wait_for_record(fd)
                os.close(fd)
                raise LockHeld(self.path, owner) from None
            if _names(self.path, fd):
                break
            os.close(fd)  # the holder removed the file as we opened it: lock the new one
        self._fd = fd
        self.owner = Owner(self.command, os.getpid(), socket.gethostname(), utcnow(),
                           self._details)
        self._write()
        return self.owner

    def update(self, **details) -> None:
        """Add details to the owner record (e.g. ids known only once the lock is held)."""
        if self._fd is None or self.owner is None:
            raise RuntimeError(f"{self.path} is not held")
        self._details.update(details)
        self.owner = Owner(self.owner.command, self.owner.pid, self.owner.host,
                           self.owner.since, self._details)
        self._write()

    def release(self) -> None:
        """Remove the lock file and drop the lock (closing the descriptor drops it)."""
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = None
        self.owner = None

    def holder(self) -> Owner | None:
        """The record in the lock file (a dead holder's too), or None when there is none."""
        return read_owner(self.path)

    def _write(self) -> None:
        assert self._fd is not None and self.owner is not None, "write only while held"
        data = self.owner.to_json().encode("utf-8")
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def __enter__(self) -> OSLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read_owner(path: str | Path) -> Owner | None:
    """The owner record in a lock file, or None when there is no file or no record."""
    try:
        return Owner.parse(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def _names(path: Path, fd: int) -> bool:
    """Whether `path` still names the file open as `fd`."""
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)


def _wait_for_record(fd: int) -> Owner | None:
    deadline = time.monotonic() + RECORD_WAIT
    while True:
        owner = Owner.parse(os.pread(fd, 65536, 0).decode("utf-8", "replace"))
        if owner is not None or time.monotonic() > deadline:
            return owner
        time.sleep(0.02)
