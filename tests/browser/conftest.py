"""Fixtures of the console's browser tests: one headless chromium per module, a fresh
page per test, and a console server with a failing upstream."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from selenium.webdriver.remote.webdriver import WebDriver

from tests.browser.fleet import ConsoleServer
from tests.chaos.support import ChaosUpstream
from tests.support.browser import ConsolePage, browser_missing, start_chromium


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """A headless chromium with a fresh profile, shared by one module's tests (each
    test's server has its own port, hence its own origin and storage)."""
    missing = browser_missing()
    if missing:
        pytest.fail(missing)
    driver = start_chromium(tmp_path_factory.mktemp("chromium") / "profile")
    yield driver
    driver.quit()


@pytest.fixture
def console(tmp_path: Path) -> Iterator[ConsoleServer]:
    """A server with the console and a tokens file (tests/browser/fleet.py)."""
    server = ConsoleServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def upstream() -> Iterator[ChaosUpstream]:
    with ChaosUpstream() as u:
        yield u


@pytest.fixture
def new_page(chromium: WebDriver) -> Iterator[Callable[[str], ConsolePage]]:
    """ConsolePage for a base URL; at the end the page must have logged no error."""
    pages: list[ConsolePage] = []

    def make(base_url: str) -> ConsolePage:
        page = ConsolePage(chromium, base_url)
        pages.append(page)
        return page

    yield make
    for page in pages:
        errors = [e for e in page.errors() if not _expected(e)]
        chromium.get("about:blank")
        assert not errors, f"the page logged errors: {errors}"


def _expected(message: str) -> bool:
    """Errors a test provokes on purpose: refused calls (the browser logs their status),
    and a feed cut while its server restarts."""
    return any(text in message for text in (
        "status of 401", "status of 403", "status of 404", "ERR_CONNECTION_REFUSED",
        "ERR_INCOMPLETE_CHUNKED_ENCODING", "ERR_EMPTY_RESPONSE", "net::ERR_", "live feed",
    ))
