"""``python -m civimc_sandbox.emulator``: serve an emulated audience in the foreground.

``main(argv)`` is reusable by the project CLI.  ``--members FILE.json`` is a
JSON array of members (``email_address``, ``status``, ``last_changed``,
``merge_fields``).  Prints one line with the base URL, then serves until
interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import orjson

from civimc_sandbox.emulator import EMULATOR_CHOICES
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
    p.add_argument("--max-connections", type=int, default=10)
    p.add_argument("--choices", action="store_true",
                   help="print the emulator's choices where the real API is unverified and exit")
    return p


def make_emulator(args: argparse.Namespace) -> Emulator:
    emu = Emulator(api_key=args.api_key)
    emu.max_connections = args.max_connections
    emu.add_list(list_id=args.list_id, name=args.list_name)
    if args.members:
        emu.load_members(args.list_id, orjson.loads(args.members.read_bytes()))
    return emu


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.choices:
        print(EMULATOR_CHOICES, end="")
        return 0
    emu = make_emulator(args)
    server = EmulatorServer(emu, host=args.host, port=args.port)
    print(f"Mailchimp emulator serving list {args.list_id} at {server.base_url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
