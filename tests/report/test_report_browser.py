"""Issue 15: the audit report as an admin opens it, in headless Chromium at 1366×768 — the demo's
people (the seed's five and the generated crowd), and names that look like HTML.

Screenshots are written under each test's tmp_path for a person to look at."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from support.apply import cli_ok
from support.browser import HEIGHT, overflow
from support.report_html import people_rows
from support.values import TEST_LIST_ID

from civimc_sandbox.demo import GENERATED_PEOPLE
from civimc_sandbox.population import generate, load_people
from civimc_sandbox.seed import load_seed

YEAR = 2026
HELD = "held.only@example.org"


def build_report(run_cli, config: Path) -> Path:
    for cmd in (["snapshot"], ["reconcile"], ["report"]):
        cli_ok(run_cli, config, *cmd)
    (run,) = sorted((config.parent / "runs").iterdir())
    return run


def held_only_contact(civi_db) -> int:
    """A contact in the group whose only address is on hold (no usable email)."""
    f = civi_db.fixture
    cid = f.contact("Hilda", "Held", email=None)
    f.email(cid, HELD, is_primary=True, on_hold=1)
    f.add_to_group(cid, civi_db.group_id, datetime(YEAR, 1, 3, 10, tzinfo=UTC))
    f.commit()
    return cid


@pytest.fixture
def demo_report(civi_db, emulator, make_config, run_cli):
    """The demo's data (seed + generated crowd) and one contact with only an on-hold address,
    snapshotted, reconciled and reported through the CLI."""
    load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)
    load_people(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID,
                generate(GENERATED_PEOPLE, seed=1))
    config = make_config()
    return config, build_report(run_cli, config)


def shot(driver, tmp_path: Path, name: str) -> None:
    driver.save_screenshot(str(tmp_path / f"{name}.png"))


def visible_rows(driver) -> list[str]:
    return [r.text for r in driver.find_elements(By.CSS_SELECTOR, "#people tbody tr")
            if "dt-empty" not in (r.find_element(By.TAG_NAME, "td").get_attribute("class") or "")]


def test_demo_report_reads_at_a_laptop_width(demo_report, browser, tmp_path):
    _config, run = demo_report
    browser.get((run / "audit.html").as_uri())
    browser.find_element(By.CSS_SELECTOR, "#people_wrapper, .dt-container")  # DataTables ran
    shot(browser, tmp_path, "report-first-screen")
    assert overflow(browser) <= 0
    # the headline and "How it decides" are on the first screen
    headline = browser.find_element(By.CSS_SELECTOR, ".civimc-headline")
    assert "people already agree;" in headline.text and "cannot be synced" in headline.text
    for el in (headline, browser.find_element(By.ID, "how-it-decides")):
        assert 0 <= el.rect["y"] < HEIGHT - 20, el.text
    # every table-of-contents link leads to its section
    links = browser.find_elements(By.CSS_SELECTOR, "nav.civimc-toc a")
    assert [a.text for a in links] == ["How it decides", "What would happen", "Where people go",
                                       "The people", "Review buckets"]
    for a in [(a.get_attribute("href"), a.text) for a in links]:
        target = a[0].split("#", 1)[1]
        browser.find_element(By.CSS_SELECTOR, f'nav.civimc-toc a[href="#{target}"]').click()
        top = browser.execute_script(
            f"return document.getElementById('{target}').getBoundingClientRect().top")
        assert -2 <= top < HEIGHT / 2, (a[1], top)
        shot(browser, tmp_path, f"report-{target}")
        assert overflow(browser) <= 0, a[1]
    # the people table filters in the page (no network: file:// and the bundled DataTables)
    browser.execute_script("document.getElementById('the-people').scrollIntoView()")
    before = browser.find_element(By.CSS_SELECTOR, ".dt-info").text
    search = browser.find_element(By.CSS_SELECTOR, ".dt-search input")
    search.send_keys("Barney Rubble")
    rows = visible_rows(browser)
    assert len(rows) == 1 and "Barney Rubble" in rows[0]
    assert "gets removed from CiviCRM group" in rows[0]
    assert browser.find_element(By.CSS_SELECTOR, ".dt-info").text != before
    shot(browser, tmp_path, "report-people-filtered")
    # each review bucket's people open under its line
    bucket = browser.find_element(By.CSS_SELECTOR, "details.civimc-bucket")
    assert not bucket.find_element(By.TAG_NAME, "table").is_displayed()
    bucket.find_element(By.TAG_NAME, "summary").click()
    assert bucket.find_element(By.TAG_NAME, "table").is_displayed()
    shot(browser, tmp_path, "report-bucket-open")
    assert overflow(browser) <= 0


def test_beyond_a_few_hundred_people_the_full_list_is_beside_the_page(demo_report):
    config, run = demo_report
    page = (run / "audit.html").read_text(encoding="utf-8")
    people = list(csv.DictReader(io.StringIO((run / "people.csv").read_text(encoding="utf-8"))))
    shown = people_rows(page)
    assert len(people) == GENERATED_PEOPLE + 5 > len(shown)
    assert '<a href="people.csv">people.csv</a>' in page
    # removals first, and each outcome's first rows are there
    outcomes = [r["Outcome"] for r in shown]
    assert outcomes[0] == "gets removed from CiviCRM group"
    assert {r["outcome"] for r in people} >= {"remove_from_civicrm_group", "no_change"}
    assert all(r["Why"] for r in shown)  # the reason on every row


def test_a_contact_whose_only_address_is_on_hold_shows_it(civi_db, emulator, make_config,
                                                          run_cli):
    load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)
    held_only_contact(civi_db)
    config = make_config()
    run = build_report(run_cli, config)
    out = cli_ok(run_cli, config, "outcomes", "--format", "csv")
    rows = [r for r in csv.DictReader(io.StringIO(out)) if r["email"] == HELD]
    assert len(rows) == 1 and rows[0]["reason_code"] == "no_usable_email"
    held = [r for r in csv.DictReader(io.StringIO((run / "people.csv").read_text()))
            if r["email"] == HELD]
    assert held == rows  # people.csv is what `outcomes --format csv` prints
    (row,) = [r for r in people_rows((run / "audit.html").read_text()) if r["Email"] == HELD]
    assert row["Who"] == "Hilda Held" and "no usable email" in row["Outcome"]


def test_names_that_look_like_html_are_shown_as_text(civi_db, emulator, make_config, run_cli,
                                                     browser, tmp_path):
    f = civi_db.fixture
    for first, last, email in (("<script>alert(1)</script>", "Scripted", "s@example.org"),
                               ("<b>x</b>", "Bold", "b@example.org")):
        cid = f.contact(first, last, email=email)
        f.add_to_group(cid, civi_db.group_id, datetime(YEAR, 1, 2, tzinfo=UTC))
    emulator.add_member(TEST_LIST_ID, "m@example.org", status="subscribed",
                        last_changed=datetime(YEAR, 1, 1, tzinfo=UTC),
                        merge_fields={"FNAME": "<img src=x onerror=alert(2)>", "LNAME": ""})
    f.commit()
    run = build_report(run_cli, make_config())
    browser.get((run / "audit.html").as_uri())
    browser.find_element(By.CSS_SELECTOR, ".dt-container")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text  # noqa: B018 (no script ran)
    cells = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#people tbody td")]
    assert "<script>alert(1)</script> Scripted" in cells
    assert "<b>x</b> Bold" in cells
    assert "<img src=x onerror=alert(2)>" in cells  # a Mailchimp-only member, named by Mailchimp
    assert not browser.find_elements(By.CSS_SELECTOR, "#people tbody b, #people tbody img")
    shot(browser, tmp_path, "report-html-names")
