"""The benchmarks still run against today's store schema (a tiny size: figures are not judged
here, only that each benchmark completes and prints its ratio with its target)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_evidence_benchmark_runs_at_a_tiny_size():
    done = subprocess.run([sys.executable, "-m", "bench", "evidence", "--people", "2000",
                           "--feeds", "1100", "--rounds", "1"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode in (0, 1), done.stderr  # 1: a missed target on a busy machine
    assert "ratio evidence reads/raw:" in done.stdout
    assert "requests: 1,100 feeds for 1,100 contested rows, none for the other 900" in done.stdout
    assert "whole evidence step through /batches:" in done.stdout  # above the threshold


def test_the_workflow_benchmark_runs_at_a_tiny_size():
    done = subprocess.run([sys.executable, "-m", "bench", "workflow", "--people", "2000"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode in (0, 1), done.stderr  # 1: a missed target on a busy machine
    for step in ("reconcile", "report", "outcomes --format csv", "plan", "review --export",
                 "approve --all", "approve --freeze", "apply (dry run)"):
        assert f"\n{step}: " in done.stdout, (step, done.stdout)
    assert "(target ≤ 5x, < 1.5 GB)" in done.stdout


def test_the_interests_and_reconcile_benchmarks_run_at_a_tiny_size():
    env = {**os.environ, "BENCH_PEOPLE": "2000", "BENCH_REPEAT": "1"}
    done = subprocess.run([sys.executable, "-m", "bench", "interests", "reconcile"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode in (0, 1), done.stderr  # 1: a missed target on a busy machine
    assert "with 3 mapped interests" in done.stdout
    assert "people (outcomes written to the store)" in done.stdout
    assert "== summary ==" in done.stdout


def test_the_civicrm_benchmark_runs_at_a_tiny_size():
    done = subprocess.run([sys.executable, "-m", "bench", "civicrm", "--contacts", "2000",
                           "--repeat", "1", "--drop"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode in (0, 1), done.stderr  # 1: a missed target on a busy machine
    assert "civicrm snapshot command (2,000 contacts): " in done.stdout
    assert "vs mariadb --batch --quick plain dump to a file" in done.stdout
    assert "peak memory" in done.stdout


def test_the_mailchimp_benchmark_runs_at_a_tiny_size():
    done = subprocess.run([sys.executable, "-m", "bench", "mailchimp", "--members", "3000",
                           "--rounds", "1", "--writes", "100"], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr  # below a million members a miss does not fail
    out = done.stdout
    assert "latency 0 s: baseline" in out and "latency 0.1 s: baseline" in out
    assert "(target ≥ 0.6)" in out and "(target ≥ 0.9)" in out
    assert "CLI `snapshot --mailchimp-only` (process start to exit)" in out
    assert "CLI `snapshot --mailchimp-only --incremental`" in out
    assert out.count("(target ≤ 0.1)") == 4  # requests and time, in-process and CLI


def test_the_run_benchmark_runs_at_a_tiny_size(mysql_server):
    done = subprocess.run([sys.executable, "-m", "bench", "run", "--people", "2000",
                           "--changed", "0.05"], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode in (0, 1), done.stderr  # 1: a missed target on a busy machine
    for figure in ("run: ", "report step in run: ", "incremental run (", "report: "):
        assert f"\n{figure}" in done.stdout, (figure, done.stdout)
    assert "'mailchimp': 'incremental'" in done.stdout
