"""`python -m bench [NAME ...] [-- module options]`: run every bench module (or those named) and
print each result as a ratio to its same-run baseline.

A bench module is `bench/bench_<name>.py` with `run(argv: list[str]) -> list[dict]`; each dict
has `name`, `seconds`, `baseline`, `baseline_seconds` and optionally `target` (the highest
acceptable ratio), `cpu_seconds` / `baseline_cpu_seconds` (process CPU time, steadier than
wall-clock on a shared machine; printed as a second ratio) and `notes`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    names, _, extra = (argv[:argv.index("--")], None, argv[argv.index("--") + 1:]) \
        if "--" in argv else (argv, None, [])
    here = Path(__file__).parent
    modules = sorted(m.name for m in pkgutil.iter_modules([str(here)])
                     if m.name.startswith("bench_"))
    chosen = [m for m in modules if not names or m.removeprefix("bench_") in names or m in names]
    if not chosen:
        print(f"no bench module matches {names}; have {', '.join(modules)}", file=sys.stderr)
        return 2
    failed = False
    for name in chosen:
        results = importlib.import_module(f"bench.{name}").run(extra)
        for r in results:
            ratio = r["seconds"] / r["baseline_seconds"]
            target = r.get("target")
            verdict = "" if target is None else ("  ok" if ratio <= target else "  OVER TARGET")
            failed |= target is not None and ratio > target
            print(f"{r['name']}: {r['seconds']:.2f}s vs {r['baseline']} {r['baseline_seconds']:.2f}s"
                  f" = {ratio:.2f}x" + (f" (target ≤ {target}x)" if target else "") + verdict)
            if r.get("cpu_seconds") and r.get("baseline_cpu_seconds"):
                print(f"    CPU time: {r['cpu_seconds']:.2f}s vs {r['baseline_cpu_seconds']:.2f}s"
                      f" = {r['cpu_seconds'] / r['baseline_cpu_seconds']:.2f}x")
            for note in r.get("notes", []):
                print(f"    {note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
