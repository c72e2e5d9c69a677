"""The demo's Mailchimp emulator as a background process that outlives `make demo`.

`BackgroundEmulator(folder)` owns four files in the demo folder: `emulator-state.json` (the
audience; the emulator saves every change to it), `emulator.json` (the port and list id it was
started with, so a restart answers where the config points), `emulator.pid` and
`emulator.log`. The process runs in its own session, so it survives the shell that started it;
`stop()` ends it with SIGTERM (it then saves its state) and only if the pid file names an
emulator serving this folder's state, never an unrelated process that reused the pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from base64 import b64encode
from pathlib import Path

from civimc_audit.errors import ConfigError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BackgroundEmulator:
    """Start, find and stop the emulator that serves one demo folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder).resolve()
        self.state_path = self.folder / "emulator-state.json"
        self.info_path = self.folder / "emulator.json"
        self.pid_path = self.folder / "emulator.pid"
        self.log_path = self.folder / "emulator.log"

    def base_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}/3.0"

    def pid(self) -> int | None:
        """The pid of this folder's emulator if it is running, else None."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:  # alive, but someone else's: not ours
            return None
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists():
            args = cmdline.read_bytes().split(b"\0")
            if b"civimc_sandbox.emulator" not in args or str(self.state_path).encode() not in args:
                return None
        return pid

    def start(self, port: int, list_id: str, api_key: str) -> int:
        """Start serving the state file on `port`; waits until it answers. Returns the pid."""
        if self.pid() is not None:
            raise ConfigError(f"the demo emulator of {self.folder} is already running")
        self.info_path.write_text(json.dumps({"port": port, "list_id": list_id}))
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "civimc_sandbox.emulator", "--port", str(port),
                 "--list-id", list_id, "--api-key", api_key, "--state", str(self.state_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                cwd=self.folder)
        self.pid_path.write_text(f"{proc.pid}\n")
        self._wait_until_it_answers(proc, port, api_key)
        return proc.pid

    def restart(self, api_key: str) -> int:
        """Start again where the last run left off (same port, same state)."""
        if not self.state_path.exists() or not self.info_path.exists():
            raise ConfigError(f"no demo in {self.folder}: run `make demo` first")
        info = json.loads(self.info_path.read_text())
        return self.start(info["port"], info["list_id"], api_key)

    def _wait_until_it_answers(self, proc: subprocess.Popen, port: int, api_key: str) -> None:
        request = urllib.request.Request(
            self.base_url(port) + "/ping",
            headers={"Authorization": "Basic " + b64encode(f"demo:{api_key}".encode()).decode()})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(request, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
        raise ConfigError(f"the demo emulator did not start on port {port}: "
                          f"{' / '.join(tail) or 'no output'} (log: {self.log_path})")

    def stop(self) -> int | None:
        """Stop this folder's emulator; returns the pid it had, or None if none was running."""
        pid = self.pid()
        if pid is not None:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._alive(pid):
                time.sleep(0.05)
            if self._alive(pid):  # state is saved within a quarter second anyway
                os.kill(pid, signal.SIGKILL)
        self.pid_path.unlink(missing_ok=True)
        return pid

    @staticmethod
    def _alive(pid: int) -> bool:
        try:
            # Reap it if it is our own child (a demo that started and stops in one process).
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                return False
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
