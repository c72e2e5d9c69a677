"""`python -m bench [NAME ...] [--] [module options]`: run every bench module (or those named)
and print each result as a ratio to a baseline measured in the same run.

Names come first (without the `bench_` prefix); everything from the first option on (an optional
`--` is dropped) goes to the modules. A bench module is `bench/bench_<name>.py` with either
- `run(argv) -> list[dict]`: each dict has `name`, `seconds`, `baseline`, `baseline_seconds` and
  optionally `target` (the highest acceptable time ratio), `cpu_seconds` /
  `baseline_cpu_seconds` (process CPU time, steadier than wall-clock on a shared machine) and
  `notes`; this runner prints the ratios; or
- `main(argv) -> int`: the module measures and prints its own figures and ratios.
With more than one module, a summary at the end names each module that missed a target or
failed; the exit status is 1 on any miss (2 when a module failed to run).
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
    outcomes: dict[str, int] = {}
    for name in chosen:
        short = name.removeprefix("bench_")
        print(f"== {short} ==", flush=True)
        try:
            outcomes[short] = _run_module(importlib.import_module(f"bench.{name}"), extra)
        except Exception as exc:  # one broken bench must not hide the others' figures
            if len(chosen) == 1:
                raise
            print(f"{short}: failed: {type(exc).__name__}: {exc}", flush=True)
            outcomes[short] = 2
    if len(outcomes) > 1:
        _summary(outcomes)
    return max(outcomes.values())


def _run_module(module, extra: list[str]) -> int:
    """0 when every figure met its target, 1 on a miss."""
    if hasattr(module, "run"):
        return 1 if _report(module.run(extra)) else 0
    return module.main(extra)


def _summary(outcomes: dict[str, int]) -> None:
    """One line per module at the end, so a long run's misses are not lost in its output."""
    print("== summary ==")
    for short, code in outcomes.items():
        verdict = {0: "every target met", 1: "MISSED a target (see above)"}.get(
            code, f"failed (exit {code})")
        print(f"{short:<12} {verdict}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main(sys.argv[1:]))
