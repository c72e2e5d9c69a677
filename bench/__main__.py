"""`python -m bench [NAME ...] [--] [module options]`: run every bench module (or those named)
and print each result as a ratio to a baseline measured in the same run.

Names come first (without the `bench_` prefix); everything from the first option on (an optional
`--` is dropped) goes to the modules. A bench module is `bench/bench_<name>.py` with either
- `run(argv) -> list[dict]`: each dict has `name`, `seconds`, `baseline`, `baseline_seconds` and
  optionally `target` (the highest acceptable time ratio), `cpu_seconds` /
  `baseline_cpu_seconds` (process CPU time, steadier than wall-clock on a shared machine) and
  `notes`; this runner prints the ratios; or
- `main(argv) -> int`: the module measures and prints its own figures and ratios.
Absolute times depend on the machine and its load; only the ratios mean anything.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    for i, arg in enumerate(argv):
        if arg.startswith("-"):
            return argv[:i], argv[i + 1:] if arg == "--" else argv[i:]
    return argv, []


def _report(results: list[dict]) -> bool:
    """Print structured results; True if any missed its target."""
    missed = False
    for r in results:
        ratio = r["seconds"] / r["baseline_seconds"]
        target = r.get("target")
        verdict = "" if target is None else ("  ok" if ratio <= target else "  OVER TARGET")
        missed |= target is not None and ratio > target
        print(f"{r['name']}: {r['seconds']:.2f}s vs {r['baseline']} {r['baseline_seconds']:.2f}s"
              f" = {ratio:.2f}x" + (f" (target ≤ {target}x)" if target else "") + verdict)
        if r.get("cpu_seconds") and r.get("baseline_cpu_seconds"):
            print(f"    CPU time: {r['cpu_seconds']:.2f}s vs {r['baseline_cpu_seconds']:.2f}s"
                  f" = {r['cpu_seconds'] / r['baseline_cpu_seconds']:.2f}x")
        for note in r.get("notes", []):
            print(f"    {note}")
    return missed


def main(argv: list[str]) -> int:
    names, extra = _split(argv)
    here = Path(__file__).resolve().parent
    modules = sorted(p.stem for p in here.glob("bench_*.py"))
    chosen = [m for m in modules if not names or m.removeprefix("bench_") in names or m in names]
    if not chosen:
        print(f"no bench module matches {names}; have {', '.join(m[6:] for m in modules)}",
              file=sys.stderr)
        return 2
    code = 0
    for name in chosen:
        print(f"== {name.removeprefix('bench_')} ==", flush=True)
        module = importlib.import_module(f"bench.{name}")
        if hasattr(module, "run"):
            code = max(code, 1 if _report(module.run(extra)) else 0)
        else:
            code = max(code, module.main(extra))
    return code


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main(sys.argv[1:]))
