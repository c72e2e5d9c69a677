"""Issue 15 point 5 and issue 20 point 6: the scheduled run's pages — its section at the top of
the audit report and the runs index — in headless Chromium at 1366×768, and any text from
outside (Mailchimp's error details, names, messages) shown as text on every page."""

from __future__ import annotations

from pathlib import Path

from selenium.webdriver.common.by import By
from support.apply import cli_ok
from support.browser import WIDTH, overflow
from support.values import TEST_LIST_ID

from civimc_audit.common.summary import write_summary
from civimc_audit.runs.index import render_index
from civimc_audit.runs.section import run_section_html
from civimc_sandbox.seed import load_seed

YEAR = 2026
HOSTILE = "<script>alert(1)</script> <b>x</b>"


def test_run_section_and_index_show_outside_text_as_text(tmp_path):
    summary = {"run": "20260101T000000Z", "status": "failed", "message": HOSTILE,
               "steps": {"snapshot_mailchimp": "failed", HOSTILE: "ok"},
               "durations": {"snapshot_mailchimp": 1.0},
               "thresholds": {"max_removals": {"limit": 5, "value": 7.0, "crossed": True}},
               "changes_since_previous": None, "outcomes": {"no_change": 3}}
    section = run_section_html(summary)
    assert "<script>" not in section and "<b>x</b>" not in section
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;b&gt;x&lt;/b&gt;" in section
    assert "<td>7</td>" in section and "7.0" not in section  # counts as whole numbers
    folder = tmp_path / "20260101T000000Z"
    folder.mkdir()
    write_summary(folder, summary)
    from civimc_audit.runs.index import load_runs

    page = render_index(load_runs(tmp_path))
    assert "<script>alert" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_run_report_and_index_read_at_a_laptop_width(civi_db, emulator, make_config, run_cli,
                                                     browser, tmp_path):
    load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)
    config = make_config()
    for _ in range(2):
        cli_ok(run_cli, config, "run")
    runs = config.parent / "runs"
    latest = sorted(p for p in runs.iterdir() if p.is_dir())[-1]
    browser.get((latest / "audit.html").as_uri())
    section = browser.find_element(By.CSS_SELECTOR, ".civimc-run-section")
    states = [row.find_elements(By.TAG_NAME, "td")[1].text
              for row in section.find_elements(By.CSS_SELECTOR, "table tbody tr")[:7]]
    assert states and not {"running", "pending"} & set(states), states
    browser.save_screenshot(str(tmp_path / "run-report.png"))
    assert overflow(browser) <= 0
    browser.get((runs / "index.html").as_uri())
    browser.save_screenshot(str(tmp_path / "runs-index.png"))
    assert overflow(browser) <= 0
    chart = browser.find_element(By.CSS_SELECTOR, "img")
    assert 0 < chart.size["width"] <= WIDTH
    assert browser.execute_script("return arguments[0].complete && arguments[0].naturalWidth",
                                  chart) > 0
    assert len(browser.find_elements(By.CSS_SELECTOR, "tbody tr")) == 2
    assert Path(latest / "people.csv").exists()
