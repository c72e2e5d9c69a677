"""`python -m bench` (or `make bench`): run every benchmark in bench/ and print ratios.

A benchmark is a module `bench/bench_<name>.py` with a function `bench()` returning a list of
results, each a dict with `name`, `seconds`, `baseline` (what it is compared with),
`baseline_seconds`, and optionally `cpu_seconds` / `baseline_cpu_seconds` (CPU time of the
process, steadier than wall-clock on a shared machine; printed as a second ratio),
`target_ratio` (checked against the wall-clock ratio) and `note`. Timings are only ever reported
as ratios against a baseline measured in the same run, never asserted in tests.
Run a subset with `python -m bench reconcile ...` (names without the `bench_` prefix).
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    folder = Path(__file__).resolve().parent
    names = sorted(p.stem for p in folder.glob("bench_*.py"))
    if argv:
        names = [n for n in names if n.removeprefix("bench_") in argv]
    missed = 0
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        for r in module.bench():
            ratio = r["seconds"] / r["baseline_seconds"] if r["baseline_seconds"] else float("inf")
            target = r.get("target_ratio")
            verdict = ""
            if target is not None:
                ok = ratio <= target
                missed += not ok
                verdict = f"  (target ≤ {target:g}×: {'met' if ok else 'MISSED'})"
            print(f"{r['name']}: {r['seconds']:.2f} s; baseline {r['baseline']}: "
                  f"{r['baseline_seconds']:.2f} s; ratio {ratio:.2f}×{verdict}")
            if r.get("cpu_seconds") and r.get("baseline_cpu_seconds"):
                print(f"    CPU time: {r['cpu_seconds']:.2f} s vs {r['baseline_cpu_seconds']:.2f} s;"
                      f" ratio {r['cpu_seconds'] / r['baseline_cpu_seconds']:.2f}×")
            if r.get("note"):
                print(f"    {r['note']}")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main(sys.argv[1:]))
