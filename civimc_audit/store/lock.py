"""One writer at a time: the store's writer lock, and reading while a writer works.

Every command that changes the store (`snapshot`, `reconcile`, `plan`, `review --import`,
`approve`, `apply`, `verify`, `run`) holds `StoreLock` — an OS lock (common/oslock.py) on a
file beside the store, `<store>.lock` — for its whole life, taken before the store is opened. A
second writer says on stderr whom it waits for, waits up to `[store] lock_wait_seconds`, then
is refused (`StoreBusy`, exit 2) with one line naming the holder's command, pid and start,
having changed nothing. The
kernel drops the lock when its holder dies, however it dies, so there is no stale lock. Within
one process the lock is re-entrant: `run --apply` holds it and the apply inside it shares it.

DuckDB lets one process open a file read-write, or several open it read-only, never both. So a
writer, as it releases the lock, publishes a copy of the store it has just closed
(`<store>.read`, replaced in one step), and a read-only command (`outcomes`, `plan --show`,
`report`, `export`, `review --export`) that finds the store held by a writer reads that copy
instead: the store as the last finished write command left it, which it says on stderr. A
reader that opens the store itself only delays a writer for as long as it reads (writers wait
for DuckDB's own file lock up to a minute, see `open_store`).
"""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from civimc_audit.common.files import FILE_MODE
from civimc_audit.common.oslock import OSLock, Owner, read_owner
from civimc_audit.config import Config
from civimc_audit.errors import LockHeld, StoreBusy, StoreError
from civimc_audit.store.database import Store

LOCK_SUFFIX = ".lock"
COPY_SUFFIX = ".read"
POLL = 0.2  # seconds between two tries while waiting for the lock

#: on_wait(line): told once when a writer starts waiting for the lock.
OnWait = Callable[[str], None]
_held: dict[Path, StoreLock] = {}  # the locks this process holds, by lock file
_held_guard = threading.Lock()


def holds_lock(store_file: Path) -> bool:
    """Whether this process holds the writer lock of `store_file`."""
    with _held_guard:
        return lock_path(Path(store_file)) in _held


def report_wait(line: str) -> None:
    """The default `on_wait`: one line on stderr."""
    sys.stderr.write(f"civimc-audit: {line}\n")
    sys.stderr.flush()


def lock_path(store_file: Path) -> Path:
    """The writer lock of a store: a file beside it."""
    return store_file.with_name(store_file.name + LOCK_SUFFIX)


def copy_path(store_file: Path) -> Path:
    """The copy of a store that readers use while a writer holds it."""
    return store_file.with_name(store_file.name + COPY_SUFFIX)


def holder_words(owner: Owner | None) -> str:
    """Who holds the lock, in words: command, ids, pid, host and since when."""
    if owner is None:
        return "another command (its record is not written yet)"
    ids = ", ".join(f"{k} {v}" for k, v in owner.details.items() if v is not None)
    return (f"`{owner.command}`" + (f" ({ids})" if ids else "")
            + f", pid {owner.pid} on {owner.host} since {owner.since:%Y-%m-%d %H:%M:%S}Z,")


class StoreLock:
    """`with StoreLock(store_file, "apply", wait=30):` holds the writer lock for the block.

    Refuses with `StoreBusy` after waiting `wait` seconds. Re-entrant within a process (the
    inner holder shares the outer one's lock; `update` adds to the same owner record). The
    outermost release publishes the read copy, then drops the lock.
    """

    def __init__(self, store_file: Path, command: str, *, wait: float = 0.0,
                 details: dict | None = None, on_wait: OnWait | None = report_wait):
        self.store_file = Path(store_file)
        self.command = command
        self.wait = wait
        self.on_wait = on_wait
        self.path = lock_path(self.store_file)
        self._details = dict(details or {})
        self._lock: OSLock | None = None
        self._outer: StoreLock | None = None
        self._depth = 0

    def acquire(self) -> StoreLock:
        with _held_guard:
            outer = _held.get(self.path)
            if outer is not None:
                self._outer = outer
                outer._depth += 1
                if self._details:
                    outer.update(**self._details)
                return self
        lock = OSLock(self.path, self.command, self._details)
        deadline = time.monotonic() + self.wait
        first = True
        while True:
            try:
                lock.acquire()
                break
            except LockHeld as held:
                if self.on_wait is not None and self.wait > 0 and first:
                    self.on_wait(f"{holder_words(held.owner)} holds the audit store; waiting up "
                                 f"to {self.wait:g} s for it to finish")
                first = False
                if time.monotonic() >= deadline:
                    raise StoreBusy(
                        f"{holder_words(held.owner)} holds the audit store {self.store_file} "
                        f"(one command writes to it at a time); waited {self.wait:g} s, so this "
                        f"`{self.command}` did not start and changed nothing") from None
            time.sleep(POLL)
        self._lock, self._depth = lock, 1
        with _held_guard:
            _held[self.path] = self
        return self

    def update(self, **details) -> None:
        """Add details (plan, run…) to the owner record a refused command shows."""
        target = self._outer or self
        assert target._lock is not None, "update only while held"
        target._lock.update(**details)

    def release(self) -> None:
        if self._outer is not None:
            self._outer._depth -= 1
            self._outer = None
            return
        if self._lock is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        try:
            publish_copy(self.store_file)
        finally:
            with _held_guard:
                _held.pop(self.path, None)
            self._lock.release()
            self._lock = None

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def writer_lock(config: Config, command: str, **details) -> StoreLock:
    """The writer lock of `config`'s store, waiting `[store] lock_wait_seconds`."""
    return StoreLock(config.store_file, command, wait=config.lock_wait_seconds, details=details)


def publish_copy(store_file: Path) -> Path | None:
    """Copy the closed store to its read copy, in one step; None when there is nothing
    consistent to copy (no store yet, or a write-ahead log left by a connection still open)."""
    if not store_file.exists() or store_file.with_name(store_file.name + ".wal").exists():
        return None
    target = copy_path(store_file)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        os.close(fd)
        shutil.copyfile(store_file, tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


@dataclass
class ReadCopyNote:
    """Why a reader read the copy: who holds the store, and when the copy was made."""

    holder: Owner | None
    copied_at: float

    def words(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(self.copied_at))
        return (f"{holder_words(self.holder).rstrip(',')} is writing to the audit store; "
                f"this shows it as it was at {stamp}, before that command started")


def open_for_reading(store_file: Path) -> tuple[Store, ReadCopyNote | None]:
    """The store opened read-only, or — while a writer holds it — its read copy, with a note
    saying so. Refuses with `StoreBusy` when a writer holds it and no copy was published yet."""
    try:
        return Store(store_file, read_only=True), None
    except StoreError as exc:
        if "lock" not in str(exc).lower():
            raise
    copy = copy_path(store_file)
    holder = read_owner(lock_path(store_file))
    if copy.exists():
        store = Store(copy, read_only=True)
        store.path = store_file  # messages name the store, not its copy
        return store, ReadCopyNote(holder, copy.stat().st_mtime)
    raise StoreBusy(f"{holder_words(holder).rstrip(',')} is writing to the audit store "
                    f"{store_file} and no read copy of it exists yet; try again when it ends")
