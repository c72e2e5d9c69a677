"""Issue 15 point 6: notebooks/review.ipynb driven in a real JupyterLab in headless Chromium at
1366×768: run it, filter to removals, approve one with a note, then another without; the store
holds each decision with its reviewer, and the note only on the first. Screenshots under tmp_path.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from support.apply import cli_ok
from support.browser import overflow
from support.lab import jupyter_lab
from support.values import TEST_LIST_ID

from civimc_audit.config import CONFIG_ENV, load_config
from civimc_audit.errors import StoreError
from civimc_audit.store import Store
from civimc_sandbox.seed import load_seed, seed_email

NOTEBOOKS = Path(__file__).resolve().parents[2] / "civimc_audit" / "notebooks"
YEAR = 2026


@pytest.fixture
def planned(civi_db, emulator, make_config, run_cli):
    load_seed(civi_db.fixture, civi_db.group_id, emulator, TEST_LIST_ID, YEAR)
    config = make_config()
    for cmd in (["snapshot"], ["reconcile"], ["plan"]):
        cli_ok(run_cli, config, *cmd)
    return config


def widget(driver, kind: str, label: str):
    """The ipywidget of CSS class widget-`kind` whose label reads `label`."""
    for box in driver.find_elements(By.CSS_SELECTOR, f".widget-{kind}"):
        labels = box.find_elements(By.CSS_SELECTOR, "label")
        if labels and labels[0].text.strip() == label:
            return box
    raise AssertionError(f"no {kind} widget labelled {label!r}")


def button(driver, text: str):
    (b,) = [b for b in driver.find_elements(By.CSS_SELECTOR, "button.widget-button")
            if b.text.strip() == text]
    return b


def decisions(config: Path) -> list[tuple] | None:
    """The decisions in the store (None while the notebook's kernel holds it for a moment)."""
    try:
        store = Store(load_config(config).store_file, read_only=True)
    except StoreError:
        return None
    with store:
        return store.con.execute(
            "SELECT i.email, d.decision, d.reviewer, d.note FROM decisions d"
            " JOIN plan_items i ON i.plan_id = d.plan_id AND i.item_id = d.item_id"
            " ORDER BY d.decided_at, d.item_id").fetchall()


def wait(driver, seconds: float, what):
    return WebDriverWait(driver, seconds, poll_frequency=0.3,
                         ignored_exceptions=[StaleElementReferenceException]).until(
        lambda d: what())


def pick_only_row(driver, email: str) -> None:
    """Once the filters leave exactly the row of `email` in the list to select from (the list
    is rebuilt by the kernel, so it is looked up afresh each time), select it."""
    def rows():
        return Select(widget(driver, "select-multiple", "Select").find_element(By.TAG_NAME,
                                                                               "select"))

    wait(driver, 20, lambda: [o.text for o in rows().options] and
         len(rows().options) == 1 and email in rows().options[0].text)
    rows().select_by_index(0)


def test_review_notebook_in_jupyterlab(planned, browser, tmp_path):
    lab_root = tmp_path / "lab"
    lab_root.mkdir()
    shutil.copy(NOTEBOOKS / "review.ipynb", lab_root / "review.ipynb")
    # The notebook's default config_path (None) finds the config through CIVIMC_CONFIG.
    with jupyter_lab(lab_root, {CONFIG_ENV: str(planned)}) as (base, token):
        browser.get(f"{base}/lab/tree/review.ipynb?token={token}")
        wait(browser, 90, lambda: browser.execute_script(
            "const a = window.jupyterapp; return !!(a && a.shell.currentWidget"
            " && a.shell.currentWidget.sessionContext"
            " && a.shell.currentWidget.sessionContext.session"
            " && a.shell.currentWidget.sessionContext.session.kernel)"))
        browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        wait(browser, 120, lambda: browser.find_elements(By.CSS_SELECTOR, "button.widget-button"))
        time.sleep(1)  # the widgets' layout settles
        browser.save_screenshot(str(tmp_path / "review-opened.png"))
        notebook = browser.find_element(By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Notebook")
        assert overflow(browser) <= 0
        assert browser.execute_script("return arguments[0].scrollWidth - arguments[0].clientWidth",
                                      notebook) <= 0
        # every label and button shows its whole text
        cut = browser.execute_script(
            "return [...document.querySelectorAll('.widget-label, button.widget-button')]"
            ".filter(e => e.offsetWidth > 0 && e.scrollWidth > e.clientWidth + 1)"
            ".map(e => e.textContent)")
        assert cut == [], cut
        # no cell failed, and the page speaks notebook, not command line
        assert not browser.find_elements(By.CSS_SELECTOR, ".jp-RenderedText[data-mime-type="
                                                          "'application/vnd.jupyter.stderr']")
        text = "\n".join(o.text for o in browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea"))
        text += "\n".join(m.text for m in browser.find_elements(
            By.CSS_SELECTOR, ".jp-MarkdownOutput"))
        assert "plan 1" in text
        assert "--config" not in text and "--reviewer" not in text and "None" not in text, text

        widget(browser, "text", "Reviewer").find_element(By.TAG_NAME, "input").send_keys("Ada")
        outcome = Select(widget(browser, "select-multiple", "Outcome")
                         .find_element(By.TAG_NAME, "select"))
        outcome.select_by_visible_text("remove_from_civicrm_group")
        pick_only_row(browser, seed_email("Barney"))
        note = widget(browser, "text", "Note").find_element(By.TAG_NAME, "input")
        note.send_keys("checked with the branch")
        time.sleep(1.5)  # the typed text reaches the kernel (ipywidgets syncs as you type)
        browser.save_screenshot(str(tmp_path / "review-removals.png"))
        button(browser, "Approve selected").click()
        wait(browser, 20, lambda: len(decisions(planned) or []) == 1)
        wait(browser, 10, lambda: note.get_attribute("value") == "")  # cleared for the next
        # the next decision, without a note of its own, carries none
        outcome.deselect_all()
        outcome.select_by_visible_text("add_to_mailchimp")
        pick_only_row(browser, seed_email("Betty"))
        time.sleep(1.5)
        button(browser, "Approve selected").click()
        wait(browser, 20, lambda: len(decisions(planned) or []) == 2)
        browser.save_screenshot(str(tmp_path / "review-decided.png"))
        assert overflow(browser) <= 0
    assert decisions(planned) == [
        (seed_email("Barney"), "approved", "Ada", "checked with the branch"),
        (seed_email("Betty"), "approved", "Ada", None)]
