"""summary.json's one definition: the keys it types and writes are the README's, and writing and
reading it go through one pair of functions."""

from __future__ import annotations

import json
import re
from pathlib import Path

from civimc_audit.common.summary import (
    SUMMARY_NAME,
    ApplySummary,
    ChangesSincePrevious,
    PlanPart,
    PrunedPart,
    RunSummary,
    SnapshotPart,
    StandingParts,
    Threshold,
    VerifyPart,
    from_json,
    new_run_summary,
    read_summary,
    to_json,
    write_summary,
)

README = Path(__file__).resolve().parents[2] / "README.md"
# Written by every run, though the README's example leaves them out.
UNDOCUMENTED = {"apply", "reuse_snapshots"}


def _readme_examples() -> tuple[dict, dict]:
    """The section's full example and its `--apply` fragment."""
    section = README.read_text(encoding="utf-8").split("### Reading summary.json", 1)[1]
    full, fragment = re.findall(r"```json\n(.*?)```", section, re.S)[:2]
    return json.loads(full), json.loads("{" + fragment + "}")


def _new() -> RunSummary:
    return new_run_summary("20260301T023000Z", started_at="2026-03-01T02:30:00Z",
                           version="0.1.0", steps=("reconcile", "index"), apply=False,
                           reuse_snapshots=False, warnings=["took over a stale lock"])


def test_a_run_writes_exactly_the_documented_keys():
    full, fragment = _readme_examples()
    documented = set(full) | set(fragment)
    assert set(_new()) == documented | UNDOCUMENTED
    assert set(RunSummary.__annotations__) == set(_new())


def test_the_parts_have_the_documented_keys():
    full, fragment = _readme_examples()
    assert set(SnapshotPart.__annotations__) == set(full["snapshots"]["mailchimp"])
    assert set(Threshold.__annotations__) == set(full["thresholds"]["max_removals"])
    assert set(ChangesSincePrevious.__annotations__) == set(full["changes_since_previous"])
    assert set(PrunedPart.__annotations__) == set(full["pruned"]) | {"apply_folders"}
    assert set(PlanPart.__annotations__) == set(fragment["plan"])
    assert set(VerifyPart.__annotations__) == set(fragment["verify"])
    assert set(StandingParts.__annotations__) == set(fragment)
    assert set(ApplySummary.__annotations__) == {"plan", "run", "sha256", "counts",
                                                 "finished_at"}


def test_a_new_summary_is_running_with_every_step_pending():
    s = _new()
    assert list(s)[:3] == ["run", "status", "message"]
    assert s["status"] == "running" and s["steps"] == {"reconcile": "pending", "index": "pending"}
    assert s["warnings"] == ["took over a stale lock"] and s["snapshots"] == {}


def test_write_and_read_back(tmp_path):
    s = _new()
    s["message"] = "key 0123456789abcdef leaked"
    path = write_summary(tmp_path, s, scrub=lambda t: t.replace("0123456789abcdef", "***"))
    assert path == tmp_path / SUMMARY_NAME
    text = path.read_text(encoding="utf-8")
    assert text == to_json({**s, "message": "key *** leaked"}) and text.endswith("}\n")
    assert text.startswith('{\n  "run": "20260301T023000Z",\n')
    assert read_summary(tmp_path) == from_json(text) == {**s, "message": "key *** leaked"}


def test_reading_a_missing_or_broken_summary_says_why(tmp_path):
    assert read_summary(tmp_path) == {"status": "failed",
                                      "message": "no summary.json (the run was interrupted)"}
    (tmp_path / SUMMARY_NAME).write_text("{not json")
    assert read_summary(tmp_path)["message"] == "summary.json is not valid JSON"
