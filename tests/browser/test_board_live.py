"""The breakers board in a real browser, fed live by a real server and real agents.

Agent processes call an upstream through one cluster breaker. The page is
loaded once; the upstream then fails, hangs a probe and heals, and the board
must follow (closed, open with a countdown that runs down, half-open, closed)
without a reload: a marker set on ``window`` before the trip is still there
after it. The trip-to-page latency is printed, not asserted (a shared machine).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from fusebox.v1 import breaker_pb2
from tests.browser.fleet import (
    BREAKER,
    ConsoleServer,
    app_key,
    spec_yaml,
    start_agent,
    token,
    wait_ready,
)
from tests.chaos.support import FAIL, HANG, OK, ChaosUpstream
from tests.support.browser import ConsolePage
from tests.support.processes import AgentProcess

pytestmark = pytest.mark.e2e

SPEC = "board-live"

#: Records every state a board row shows, with the browser's wall clock (ms):
#: window.__states = [[display name, state text, epoch ms], ...] (changes only).
RECORD_STATES = """
window.__states = [];
const last = new Map();
const note = (tr) => {
  const cell = tr.querySelector('[data-field="state"]');
  if (!cell || last.get(tr.dataset.breaker) === cell.textContent) return;
  last.set(tr.dataset.breaker, cell.textContent);
  window.__states.push([tr.dataset.breaker, cell.textContent, Date.now()]);
};
document.querySelectorAll('[data-testid="breaker-row"]').forEach(note);
new MutationObserver((mutations) => {
  for (const m of mutations) {
    const node = m.target.nodeType === 1 ? m.target : m.target.parentElement;
    const tr = node && node.closest('[data-testid="breaker-row"]');
    if (tr) note(tr);
  }
}).observe(document.getElementById('view'), {subtree: true, childList: true, characterData: true});
"""


def shown_states(page: ConsolePage, name: str) -> list[tuple[str, float]]:
    records = page.driver.execute_script("return window.__states || [];")
    return [(state, at / 1000) for breaker, state, at in records if breaker == name]


def test_the_board_follows_a_trip_and_the_recovery_without_reload(
    tmp_path: Path, console: ConsoleServer, upstream: ChaosUpstream,
    new_page: Callable[[str], ConsolePage],
) -> None:
    console.apply(spec_yaml(SPEC, threshold=3, timeout="4s"))
    agents = [start_agent(tmp_path, console, f"a{i}", upstream.url(f"a{i}")) for i in range(2)]
    try:
        for agent in agents:
            wait_ready(agent)
        page = new_page(console.url)
        page.open("#/breakers", token=token("viewer"))
        assert page.text("whoami").split() == ["vera-viewer", "viewer"]
        page.wait(lambda: page.text("live-status") == "live", what="the feed live")
        page.wait(lambda: page.row_state(BREAKER) == "closed", what="the breaker listed closed")
        page.driver.execute_script("window.__marker = 'still the same page';" + RECORD_STATES)

        upstream.mode = FAIL
        page.wait(lambda: page.row_state(BREAKER) == "open", what="the trip on the page")
        trip = next(t for t in console.breaker(app_key(SPEC)).recent_transitions
                    if t.to_state == breaker_pb2.BREAKER_STATE_OPEN)
        opened_at = next(at for state, at in shown_states(page, BREAKER) if state == "open")
        latency = opened_at - trip.time.ToMicroseconds() / 1e6
        print(f"trip-to-page latency: {latency * 1000:.0f} ms (server transition to DOM change)")
        # The probe that follows the open timeout hangs, so half-open lasts long enough to see.
        upstream.mode = HANG

        first = int(page.rows()[BREAKER]["seconds"])
        assert 0 < first <= 4
        page.wait(lambda: int(page.rows()[BREAKER].get("seconds", first)) < first,
                  what="the countdown running down", deadline=4)
        page.screenshot("board-open")

        page.wait(lambda: page.row_state(BREAKER) == "half-open", what="half-open on the page",
                  deadline=15)
        upstream.mode = OK
        upstream.released.set()
        page.wait(lambda: page.row_state(BREAKER) == "closed", what="closed again on the page",
                  deadline=20)

        states = [state for state, _ in shown_states(page, BREAKER)]
        assert states[:2] == ["closed", "open"], states
        assert "half-open" in states and states[-1] == "closed", states
        assert page.driver.execute_script("return window.__marker") == "still the same page"
    finally:
        for agent in agents:
            agent.stop()


def test_the_board_reads_at_a_glance_in_both_themes(
    tmp_path: Path, console: ConsoleServer, new_page: Callable[[str], ConsolePage],
) -> None:
    """Several breakers in several states; the theme toggle switches and is remembered;
    the docs' board screenshots (light, dark, large on a wall)."""
    console.apply(spec_yaml("orders-resiliency", threshold=3, timeout="30s",
                            targets=("order-processor", "payments", "inventory")))
    healthy, failing = ChaosUpstream(), ChaosUpstream()
    failing.mode = FAIL
    agents: list[AgentProcess] = []
    with healthy, failing:
        try:
            plan = [("orders", "order-processor", failing),
                    ("get-order", "order-processor", healthy),
                    ("charge", "payments", healthy), ("reserve", "inventory", healthy)]
            for name, target, up in plan:
                agents.append(start_agent(tmp_path, console, name, up.url(name),
                                          "--target", target, "--method", name))
            for agent in agents:
                wait_ready(agent)
            console.set_override(app_key("orders-resiliency", "payments", "refund"),
                                 breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN,
                                 "refund service migration, INC-2041", ttl_seconds=1800)
            console.set_override(app_key("orders-resiliency", "inventory", "reserve"),
                                 breaker_pb2.BREAKER_OVERRIDE_FORCE_CLOSED,
                                 "false trips after the cache flush", ttl_seconds=600)
            page = new_page(console.url)
            page.open("#/breakers", token=token("operator"))
            page.wait(lambda: page.row_state("order-processor:orders") == "open"
                      and len(page.rows()) == 5, what="five breakers, one of them open")
            rows = page.rows()
            assert rows["payments:refund"]["state"] == "forced open"
            assert rows["inventory:reserve"]["state"] == "forced closed"
            assert "refund service migration, INC-2041" in rows["payments:refund"]["override"]

            # The filters narrow the board without reloading it.
            Select(page.testid("filter-state")).select_by_value("open")
            page.wait(lambda: [n for n, r in page.rows().items() if r["hidden"] == "false"]
                      == ["order-processor:orders"], what="the state filter")
            Select(page.testid("filter-state")).select_by_value("")

            html = page.driver.find_element("css selector", "html")
            start = html.get_attribute("data-theme")
            other = "dark" if start == "light" else "light"
            toggle = page.testid("theme-toggle")
            toggle.send_keys(Keys.ENTER)  # keyboard-operable
            page.wait(lambda: html.get_attribute("data-theme") == other, what="the theme switch")
            assert page.local_storage("fusebox.console.theme") == other
            page.driver.refresh()
            page.wait(lambda: page.visible("whoami"), what="still signed in after a reload")
            html = page.driver.find_element("css selector", "html")
            assert html.get_attribute("data-theme") == other

            for theme in ("light", "dark"):
                html = page.driver.find_element("css selector", "html")
                if html.get_attribute("data-theme") != theme:
                    page.testid("theme-toggle").click()
                page.wait(lambda: page.row_state("order-processor:orders") == "open",
                          what="the board shown")
                page.screenshot(f"board-{theme}")
            page.testid("density-toggle").click()
            size = page.driver.get_window_size()
            page.driver.set_window_size(1920, 1200)  # a wall screen
            page.screenshot("board-wall")
            page.driver.set_window_size(size["width"], size["height"])
            page.testid("density-toggle").click()
            page.testid("theme-toggle").click()
        finally:
            for agent in agents:
                agent.stop()
