"""``python -m civimc_sandbox.emulator``: serve an emulated audience in the foreground.

``main(argv)`` is reusable by the project CLI (``civimc-audit emulator``).  ``--members
FILE.json`` is a JSON array of members (``email_address``, ``status``, ``last_changed``,
``merge_fields``; see the README).  ``--state FILE`` keeps the audiences on disk: loaded at
start when the file exists (``--members`` is then ignored), saved within a quarter of a second
of every change and on shutdown (Ctrl-C or SIGTERM).  Prints where it serves, the API key it
accepts and how to point a config at it, then serves until stopped.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from pathlib import Path

import orjson

from civimc_sandbox.emulator import EMULATOR_CHOICES
from civimc_sandbox.emulator.persist import Autosave, load_state
from civimc_sandbox.emulator.server import EmulatorServer
from civimc_sandbox.emulator.state import DEFAULT_API_KEY, Emulator


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m civimc_sandbox.emulator",
                                description="Local Mailchimp Marketing API emulator.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    p.add_argument("--list-id", default="a1b2c3d4e5")
    p.add_argument("--list-name", default="Newsletter")
    p.add_argument("--api-key", default=DEFAULT_API_KEY)
    p.add_argument("--members", type=Path, help="JSON array of members to load")
    p.add_argument("--state", type=Path,
                   help="keep the audiences in this JSON file (resumed from it if it exists)")
    p.add_argument("--max-connections", type=int, default=10)
    p.add_argument("--choices", action="store_true",
                   help="print the emulator's choices where the real API is unverified and exit")
    return p


def make_emulator(args: argparse.Namespace) -> tuple[Emulator, str]:
    """The emulator the arguments ask for, and a few words on where its members came from."""
    emu = Emulator(api_key=args.api_key)
    emu.max_connections = args.max_connections
    if args.state and args.state.exists():
        n = load_state(emu, args.state)
        origin = f"{n} members resumed from {args.state}"
        if args.list_id not in emu.lists:
            emu.add_list(list_id=args.list_id, name=args.list_name)
        return emu, origin
    emu.add_list(list_id=args.list_id, name=args.list_name)
    if args.members:
        n = emu.load_members(args.list_id, orjson.loads(args.members.read_bytes()))
        return emu, f"{n} members from {args.members}"
    return emu, "no members yet"


def _stop_on_sigterm() -> None:
    """SIGTERM ends serving like Ctrl-C does, so the state file gets its final save."""
    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the save
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        signal.signal(signal.SIGTERM, handler)


def banner(server: EmulatorServer, emu: Emulator, list_id: str, origin: str) -> str:
    """What a person needs to use the emulator: address, key, and the config lines."""
    return (f"Mailchimp emulator serving list {list_id} at {server.base_url}\n"
            f"  audience {list_id}: {origin}\n"
            f"  API key it accepts (a made-up local key): {emu.api_key}\n"
            f"  to use it: export CIVIMC_MAILCHIMP_API_KEY={emu.api_key}\n"
            f"             and in the config's [mailchimp]: list_id = \"{list_id}\", "
            f"base_url = \"{server.base_url}\"\n"
            f"  Ctrl-C stops it")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.choices:
        print(EMULATOR_CHOICES, end="")
        return 0
    try:
        emu, origin = make_emulator(args)
    except (OSError, ValueError, KeyError, TypeError) as exc:  # JSONDecodeError is a ValueError
        source = args.state if args.state and args.state.exists() else args.members
        print(f"emulator: cannot load {source}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        server = EmulatorServer(emu, host=args.host, port=args.port)
    except OSError as exc:
        print(f"emulator: cannot serve on {args.host}:{args.port}: {exc.strerror or exc}",
              file=sys.stderr)
        return 2
    autosave = Autosave(emu, args.state).start() if args.state else None
    if args.state:
        origin += f"; kept in {args.state}"
    print(banner(server, emu, args.list_id, origin), flush=True)
    _stop_on_sigterm()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()
    finally:
        if autosave is not None:
            autosave.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
