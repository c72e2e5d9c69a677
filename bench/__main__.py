"""Run benchmarks: `python -m bench` runs every `bench_*.py` module in this folder;
`python -m bench NAME [args…]` runs `bench_NAME.py` alone with its own arguments.

Each module has `main(argv: list[str]) -> int` and prints its figures, including ratios against a
baseline it measures in the same run (absolute times depend on the machine and its load).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def modules() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(p.stem for p in here.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    names = modules()
    if argv and not argv[0].startswith("-"):
        wanted = f"bench_{argv[0].removeprefix('bench_')}"
        if wanted not in names:
            print(f"no benchmark {argv[0]!r}; have: {', '.join(n[6:] for n in names)}",
                  file=sys.stderr)
            return 2
        return importlib.import_module(f"bench.{wanted}").main(argv[1:])
    code = 0
    for name in names:
        print(f"== {name[6:]} ==", flush=True)
        code = max(code, importlib.import_module(f"bench.{name}").main([]))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
