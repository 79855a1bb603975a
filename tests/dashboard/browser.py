"""Headless Chromium driven with Selenium (Debian's ``chromium`` and ``chromium-driver``).

Every browser call blocks, so tests run them in a thread (``run``) and the reactor keeps
serving the session clients the test holds open.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from twisted.internet import threads

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.path.exists(path):
            return f"{path} is missing (apt-get install chromium chromium-driver)"
    return None


class Browser:
    def __init__(self, case, extra_args=(), artifacts: Path = ARTIFACTS):
        """``extra_args``: more Chromium flags; ``artifacts``: where screenshots go."""
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="ct-chromium-")
        self.downloads = Path(self.profile) / "downloads"
        self.downloads.mkdir()
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1400,1000",
                    f"--user-data-dir={self.profile}/profile", *extra_args):
            options.add_argument(arg)
        options.add_experimental_option("prefs", {
            "download.default_directory": str(self.downloads),
            "download.prompt_for_download": False})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        self.driver.set_page_load_timeout(30)
        self.driver.execute_cdp_cmd("Page.setDownloadBehavior", {
            "behavior": "allow", "downloadPath": str(self.downloads)})
        self.artifacts = artifacts
        artifacts.mkdir(parents=True, exist_ok=True)
        case.addCleanup(self.close)

    def close(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # -- blocking helpers (call through ``run``)

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def text(self, css: str) -> str:
        return self.find(css).text

    def wait(self, predicate, timeout: float = 15.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except Exception:
                pass
            time.sleep(0.1)
        raise AssertionError(f"browser: {what} not met within {timeout} s "
                             f"(at {self.driver.current_url})")

    def click_and_confirm(self, css: str):
        """Click a button whose form asks for confirmation, and accept the dialog."""
        self.find(css).click()
        self.wait(lambda: self.driver.switch_to.alert is not None, 5, "confirm dialog")
        self.driver.switch_to.alert.accept()

    def screenshot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def downloaded(self, suffix: str, timeout: float = 15.0) -> Path:
        found: list[Path] = []

        def done():
            found[:] = [p for p in self.downloads.iterdir() if p.name.endswith(suffix)]
            return bool(found)

        self.wait(done, timeout, f"a downloaded *{suffix} file")
        return found[0]


def run(fn, *args, **kw):
    """Run a blocking browser step in a thread; a Deferred of its result."""
    return threads.deferToThread(fn, *args, **kw)
