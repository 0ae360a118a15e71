"""A real headless browser for the console's tests: Debian's chromium driven through
Debian's chromedriver (``scripts/bootstrap.sh`` installs both), never a driver that
Selenium Manager would download.

>>> driver = start_chromium(tmp_path / "profile")
>>> page = ConsolePage(driver, "http://127.0.0.1:8686")
>>> page.open("#/breakers", token="...")
>>> page.wait(lambda: page.row_state("upstream:work") == "open", what="the trip")
>>> driver.quit()

Waiting is ``tests.support.eventually``'s: every wait has a deadline and says
what did not happen, with the page's console messages to tell why.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from tests.support.eventually import eventually

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "ConsolePage",
    "browser_missing",
    "screenshot_dir",
    "start_chromium",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

#: Headless, and quiet: no GPU, no sandbox (containers), no calls home, no QUIC.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)

#: How long one browser-side condition may take by default (a shared, loaded machine).
WAIT = 10.0


def browser_missing() -> str | None:
    """Why no browser can start here, or None."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            return (f"{path} is missing: run scripts/bootstrap.sh "
                    "(installs chromium and chromium-driver)")
    return None


def start_chromium(profile: Path, *, width: int = 1440, height: int = 900,
                   dark: bool = False) -> WebDriver:
    """A fresh headless chromium with its own profile directory (``profile``)."""
    # Selenium Manager must never download a browser or a driver.
    os.environ["SE_OFFLINE"] = "true"
    profile.mkdir(parents=True, exist_ok=True)
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={width},{height}")
    if dark:
        options.add_argument("--force-dark-mode")
        options.add_argument("--blink-settings=preferredColorScheme=0")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_log = profile.parent / f"{profile.name}-driver.log"
    service = Service(str(CHROMEDRIVER), log_output=str(driver_log))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(10)
    return driver


def screenshot_dir() -> Path | None:
    """Where ``FUSEBOX_SCREENSHOTS`` asks for the docs' screenshots, if it does."""
    value = os.environ.get("FUSEBOX_SCREENSHOTS")
    if not value:
        return None
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


class ConsolePage:
    """The console in one browser, addressed by its ``data-testid`` hooks."""

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url.rstrip("/")
        self.messages: list[dict[str, Any]] = []

    # ---- navigation ---------------------------------------------------------------

    def open(self, route: str = "#/breakers", *, token: str | None = None) -> None:
        """Load the page; with ``token``, sign in through the form."""
        self.driver.get(f"{self.base_url}/console/{route}")
        if token is not None:
            self.sign_in(token)

    def sign_in(self, token: str) -> None:
        self.wait(lambda: self.visible("signin-token"), what="the sign-in form")
        field = self.testid("signin-token")
        field.clear()
        field.send_keys(token)
        self.testid("signin-submit").click()
        self.wait(lambda: self.visible("whoami"), what="signed in (whoami shown)")

    def go(self, route: str) -> None:
        """Follow a route inside the page (no reload)."""
        self.driver.execute_script("window.location.hash = arguments[0];", route)

    # ---- finding things -------------------------------------------------------------

    def testid(self, name: str, within: WebElement | None = None) -> WebElement:
        root: Any = within or self.driver
        element: WebElement = root.find_element(By.CSS_SELECTOR, f'[data-testid="{name}"]')
        return element

    def testids(self, name: str, within: WebElement | None = None) -> list[WebElement]:
        root: Any = within or self.driver
        elements: list[WebElement] = root.find_elements(By.CSS_SELECTOR, f'[data-testid="{name}"]')
        return elements

    def visible(self, name: str) -> bool:
        return any(e.is_displayed() for e in self.testids(name))

    def text(self, name: str) -> str:
        """The text of the first element with that hook ("" when there is none)."""
        found = self.testids(name)
        return found[0].text if found else ""

    def rows(self) -> dict[str, dict[str, str]]:
        """The board's rows by display name: each cell's text (one script call)."""
        result: dict[str, dict[str, str]] = self.driver.execute_script("""
            const rows = {};
            for (const tr of document.querySelectorAll('[data-testid="breaker-row"]')) {
              const cells = {hidden: String(tr.hidden), key: tr.dataset.key || ""};
              for (const td of tr.querySelectorAll('[data-field]')) {
                cells[td.dataset.field] = td.textContent;
                if (td.dataset.seconds !== undefined) cells.seconds = td.dataset.seconds;
              }
              rows[tr.dataset.breaker] = cells;
            }
            return rows;
        """)
        return result

    def row_state(self, name: str) -> str | None:
        row = self.rows().get(name)
        return None if row is None else row.get("state")

    # ---- waiting ----------------------------------------------------------------------

    def wait(self, condition: Callable[[], bool], *, what: str, deadline: float = WAIT) -> float:
        """Block until ``condition()`` holds (stale elements count as not yet); the seconds
        it took. Fails after ``deadline`` with the page's console messages."""

        def holds() -> bool:
            try:
                return bool(condition())
            except (StaleElementReferenceException, IndexError, KeyError):
                return False

        return eventually(holds, deadline=deadline, what=what, details=self.describe)

    def describe(self) -> str:
        """What helps to understand a failed wait: URL, live status, console messages."""
        try:
            url = self.driver.current_url
            status = self.text("live-status")
            body = self.driver.execute_script("return document.body.innerText.slice(0, 1500)")
        except WebDriverException as e:
            return f"(the browser did not answer: {e.msg})"
        logs = "\n".join(f"  {m['level']} {m['message']}" for m in self.console_messages()[-20:])
        return f"url={url} live-status={status!r}\nconsole:\n{logs}\npage text:\n{body}"

    def console_messages(self) -> list[dict[str, Any]]:
        """Everything the page logged so far (chromedriver hands each message out once)."""
        with contextlib.suppress(WebDriverException):  # chromium only: get_log is not W3C
            self.messages.extend(self.driver.get_log("browser"))  # type: ignore[attr-defined]
        return self.messages

    def errors(self) -> list[str]:
        """The page's errors: uncaught exceptions, CSP violations, failed scripts."""
        return [m["message"] for m in self.console_messages() if m.get("level") == "SEVERE"]

    # ---- doing things -----------------------------------------------------------------

    def confirm(self) -> None:
        self.wait(lambda: self.testid("confirm-dialog").get_attribute("open") is not None,
                  what="the confirmation dialog")
        self.testid("confirm-ok").click()

    def screenshot(self, name: str) -> Path | None:
        """Save ``<name>.png`` under FUSEBOX_SCREENSHOTS (when set)."""
        directory = screenshot_dir()
        if directory is None:
            return None
        path = directory / f"{name}.png"
        # Let the last frame settle (fonts, a pending requestAnimationFrame batch).
        self.driver.execute_async_script(
            "const done = arguments[0]; requestAnimationFrame(() => requestAnimationFrame(done));")
        self.driver.save_screenshot(str(path))
        return path

    def local_storage(self, key: str) -> str | None:
        value: str | None = self.driver.execute_script(
            "return window.localStorage.getItem(arguments[0]);", key)
        return value

    def fetch_json(self, method: str, body: dict[str, Any], token: str) -> tuple[int, Any]:
        """POST one RPC from inside the page with ``token``: (status, parsed body)."""
        result: list[Any] = self.driver.execute_async_script("""
            const [path, body, token, done] = arguments;
            fetch(path, {method: 'POST', body: JSON.stringify(body), headers: {
              'Content-Type': 'application/json', 'Authorization': 'Bearer ' + token}})
              .then(async (r) => done([r.status, await r.text()]))
              .catch((e) => done([0, String(e)]));
        """, f"/console/api/{method}", body, token)
        status, text = result
        try:
            return int(status), json.loads(text)
        except ValueError:
            return int(status), text
