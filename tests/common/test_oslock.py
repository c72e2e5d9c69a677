"""The OS lock behind the store's writer lock: one holder at a time across processes,
and a holder that dies — even by SIGKILL — never leaves it held."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import datetime

import pytest

from civimc_audit.common.oslock import OSLock, Owner, read_owner
from civimc_audit.errors import LockHeld

HOLD = textwrap.dedent("""
    import sys, time
    from civimc_audit.common.oslock import OSLock
    lock = OSLock(sys.argv[1], "holder", {"plan": 7})
    lock.acquire()
    print("held", flush=True)
    time.sleep(120)
""")


def hold_in_child(path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE,
                             text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_second_process_is_refused_with_the_holders_record(tmp_path):
    path = tmp_path / "x.lock"
    child = hold_in_child(path)
    try:
        with pytest.raises(LockHeld) as refused:
            OSLock(path, "me").acquire()
        owner = refused.value.owner
        assert (owner.command, owner.pid, owner.details) == ("holder", child.pid, {"plan": 7})
    finally:
        child.kill()
        child.wait(30)


def test_sigkill_of_the_holder_frees_the_lock_at_once(tmp_path):
    path = tmp_path / "x.lock"
    child = hold_in_child(path)
    child.send_signal(signal.SIGKILL)
    child.wait(30)
    assert read_owner(path).pid == child.pid  # the record stays; the lock does not
    started = time.monotonic()
    with OSLock(path, "next") as lock:
        assert time.monotonic() - started < 1
        assert read_owner(path) == lock.owner and lock.owner.pid == os.getpid()
    assert not path.exists()


def test_two_holders_in_one_process_exclude_each_other_too(tmp_path):
    path = tmp_path / "x.lock"
    with OSLock(path, "first"), pytest.raises(LockHeld):
        OSLock(path, "second").acquire()
    with OSLock(path, "third") as third:  # released: free again
        assert third.held


def test_a_record_without_a_holder_does_not_block(tmp_path):
    path = tmp_path / "x.lock"
    path.write_text(Owner("run", os.getpid(), "elsewhere", datetime(2000, 1, 1)).to_json())
    with OSLock(path, "run", {"run": "r1"}) as lock:
        lock.update(plan=3)
        assert read_owner(path).details == {"run": "r1", "plan": 3}


CONTEND = textwrap.dedent("""
    import os, sys, time
    from civimc_audit.common.oslock import OSLock
    from civimc_audit.errors import LockHeld
    path, marker = sys.argv[1], sys.argv[2]
    held = 0
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        lock = OSLock(path, "contender")
        try:
            lock.acquire()
        except LockHeld:
            continue
        try:  # inside the lock: nobody else may be here
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            sys.exit("two holders at once")
        held += 1
        os.unlink(marker)
        lock.release()
    print(held)
""")


def test_processes_racing_to_take_and_release_never_hold_it_together(tmp_path):
    """Holders remove the file on release while others open it: each must lock the file the
    path names, or two could hold locks on different files at once."""
    path, marker = tmp_path / "x.lock", tmp_path / "inside"
    racers = [subprocess.Popen([sys.executable, "-c", CONTEND, str(path), str(marker)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
              for _ in range(4)]
    results = [r.communicate(timeout=60) for r in racers]
    assert [r.returncode for r in racers] == [0] * 4, results
    assert all(int(out) > 0 for out, _ in results)
