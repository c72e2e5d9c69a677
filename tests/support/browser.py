"""Headless Chromium for the tests that look at pages and notebooks as a person would.

Debian's `chromium` and `chromium-driver` are used (installed with apt-get when missing, the
test skipped with the reason only when that is impossible), driven by selenium. Every page is
looked at in a 1366×768 viewport: a laptop's screen.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WIDTH, HEIGHT = 1366, 768


def ensure_chromium() -> None:
    """Install Debian's chromium and chromium-driver if either is missing; skip if we cannot."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    if not shutil.which("apt-get"):
        pytest.skip("headless Chromium is missing and apt-get is not available to install it")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    for cmd in (["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]):
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if done.returncode:
            pytest.skip(f"could not install chromium ({' '.join(cmd)}: "
                        f"{done.stderr.strip()[-300:]})")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip("apt-get installed chromium but /usr/bin/chromium or chromedriver is missing")


def new_driver():
    """A headless Chromium whose viewport is exactly 1366×768 CSS pixels."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={WIDTH},{HEIGHT}", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                           {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1,
                            "mobile": False})
    return driver


@pytest.fixture(scope="session")
def chromium_ready():
    ensure_chromium()


@pytest.fixture
def browser(chromium_ready):
    """A fresh headless Chromium at 1366×768 for one test."""
    driver = new_driver()
    try:
        yield driver
    finally:
        driver.quit()


def overflow(driver) -> int:
    """How many CSS pixels the page is wider than the viewport (0 when it fits)."""
    return int(driver.execute_script(
        "return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - window.innerWidth"))
