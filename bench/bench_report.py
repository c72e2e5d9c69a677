"""The audit report of a million people: how big its HTML is and how long it takes to make.

A million-person store is written straight into DuckDB (population.write_store, the generated
archetypes repeated), reconciled, and reported through run_report (papermill, nbconvert), as
`civimc-audit report` does. The page must stay under REPORT_MAX_BYTES (10 MB) whatever the size
of the audience: it lists the first people of each outcome and links people.csv for everyone.
Prints the page's size, the CSV's size and the seconds each step took (only for information:
they depend on the machine). `BENCH_PEOPLE` sets the size (default 1,000,000).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench import STORE_ONLY_CONFIG
from civimc_audit.config import PolicySettings, load_config
from civimc_audit.reconcile import reconcile
from civimc_audit.report.audit import PEOPLE_CSV, run_report
from civimc_audit.store import Store
from civimc_sandbox.population import generate, write_store

BASE_PEOPLE = 10_000
REPORT_MAX_BYTES = 10 * 1024 * 1024



def million_report(folder: Path, people: int = 1_000_000) -> tuple[Path, int, dict]:
    """Write, reconcile and report `people` people under `folder`; returns the run folder, the
    number of outcome rows and the seconds each step took."""
    base = generate(min(BASE_PEOPLE, people), seed=1)
    copies = max(1, round(people / base.people))
    seconds = {}
    start = time.perf_counter()
    with Store(folder / "audit.duckdb") as store:
        civi, mc = write_store(store, base, copies=copies)
        seconds["write store"] = time.perf_counter() - start
        start = time.perf_counter()
        rec = reconcile(store, PolicySettings(), civicrm_snapshot_id=civi,
                        mailchimp_snapshot_id=mc)
        seconds["reconcile"] = time.perf_counter() - start
    config_path = folder / "civimc-audit.toml"
    config_path.write_text(STORE_ONLY_CONFIG.format(store="audit.duckdb"), encoding="utf-8")
    start = time.perf_counter()
    run = run_report(load_config(config_path))
    seconds["report"] = time.perf_counter() - start
    return run, sum(rec["counts"].values()), seconds


def open_seconds(page: Path) -> float | None:
    """Seconds headless Chromium takes to load the page until its tables are drawn (None
    without selenium and Debian's chromium); for information only."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.support.ui import WebDriverWait
    except ImportError:
        return None
    if not (Path("/usr/bin/chromium").exists() and Path("/usr/bin/chromedriver").exists()):
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1366,768"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        start = time.perf_counter()
        driver.get(page.as_uri())
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "return !!document.querySelector('.dt-container')"))
        return time.perf_counter() - start
    finally:
        driver.quit()


def main(argv: list[str]) -> int:
    people = int(os.environ.get("BENCH_PEOPLE", 1_000_000))
    with tempfile.TemporaryDirectory() as tmp:
        run, rows, seconds = million_report(Path(tmp), people)
        page = (run / "audit.html").stat().st_size
        csv = (run / PEOPLE_CSV).stat().st_size
        opened = open_seconds(run / "audit.html")
        if opened is not None:
            seconds["open in Chromium"] = opened
    ok = page < REPORT_MAX_BYTES
    print(f"report of {rows:,} people: audit.html {page / 1e6:.2f} MB "
          f"({'ok' if ok else 'OVER'} the 10 MB limit), people.csv {csv / 1e6:.1f} MB; "
          + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    return 0 if ok else 1
