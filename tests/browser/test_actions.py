"""Acting from the page, with the server's roles: an operator forces a breaker open
and the agents reject calls; a viewer's buttons are disabled and the server refuses
the viewer anyway; the audit view lists the override with its reason; resolve
shows what an app gets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.browser.fleet import (
    APP,
    BREAKER,
    METHOD,
    TARGET,
    ConsoleServer,
    calls,
    spec_yaml,
    start_agent,
    token,
    wait_ready,
)
from tests.chaos.support import ChaosUpstream
from tests.support.browser import ConsolePage
from tests.support.processes import AgentProcess

pytestmark = pytest.mark.e2e

SPEC = "checkout-resiliency"
ACTIONS = ("action-force-open", "action-force-closed", "action-disable", "action-clear",
           "action-reset")
BREAKER_PAGE = f"#/breakers/default/{SPEC}/app/{TARGET}/{METHOD}"
REASON = "deploy of upstream v2 (CHG-1138)"


def called_since(mark: int, result: str) -> Callable[[list[dict[str, object]]], bool]:
    """An agent made a call with ``result`` after its first ``mark`` events."""
    return lambda events: any(e["event"] == "call" and e["result"] == result
                              for e in events[mark:])


@pytest.fixture
def fleet(tmp_path: Path, console: ConsoleServer, upstream: ChaosUpstream,
          ) -> Iterator[tuple[ConsoleServer, list[AgentProcess]]]:
    """The console's server, a spec guarding the upstream, two agents calling it."""
    console.apply(spec_yaml(SPEC, threshold=3, timeout="5s"))
    agents = [start_agent(tmp_path, console, f"a{i}", upstream.url(f"a{i}")) for i in range(2)]
    try:
        for agent in agents:
            wait_ready(agent)
        yield console, agents
    finally:
        for agent in agents:
            agent.stop()


def test_an_operator_forces_the_breaker_open_and_every_agent_rejects(
    fleet: tuple[ConsoleServer, list[AgentProcess]], new_page: Callable[[str], ConsolePage],
) -> None:
    server, agents = fleet
    page = new_page(server.url)
    page.open("#/breakers", token=token("operator"))
    page.wait(lambda: page.row_state(BREAKER) == "closed", what="the breaker on the board")
    page.testids("breaker-row")[0].find_element("css selector", "a").click()
    page.wait(lambda: page.text("breaker-title") == BREAKER, what="the breaker's page")
    assert page.driver.current_url.endswith(BREAKER_PAGE)
    assert all(page.testid(action).is_enabled() for action in ACTIONS)
    assert "consecutiveFailures >= 3" in page.text("breaker-policy")

    page.testid("action-reason").send_keys(REASON)
    page.testid("action-ttl").send_keys("10m")
    # Cancelling sends nothing.
    page.testid("action-force-open").click()
    page.wait(lambda: page.testid("confirm-dialog").get_attribute("open") is not None,
              what="the confirmation")
    assert BREAKER in page.text("confirm-dialog")
    page.testid("confirm-cancel").click()
    page.wait(lambda: page.text("action-result") == "Cancelled.", what="cancelled")
    assert all(e["event"] != "state" or e["origin"] != "operator" for e in agents[0].events)

    marks = [len(agent.events) for agent in agents]
    page.testid("action-force-open").click()
    page.confirm()
    page.wait(lambda: page.text("action-result").startswith("Done"), what="the override applied")
    assert "forced open" in page.text("action-result")
    page.wait(lambda: any("operator override" in r.text for r in page.testids("transition-row")),
              what="the override's transition listed")
    page.screenshot("breaker-page")

    for agent, mark in zip(agents, marks, strict=True):
        agent.wait_for(called_since(mark, "open"), 10,
                       "calls rejected after the override")
    assert all("open" in calls(agent) for agent in agents)

    # The board says so too, with the reason and who set it.
    page.go("#/breakers")
    page.wait(lambda: page.row_state(BREAKER) == "forced open", what="forced open on the board")
    override = page.rows()[BREAKER]["override"]
    assert REASON in override and "oscar-operator" in override and "expires in" in override

    # The audit view lists the override with its reason.
    page.go("#/audit")
    page.wait(lambda: any(REASON in r.text for r in page.testids("audit-row")),
              what="the override in the audit log")
    row = next(r for r in page.testids("audit-row") if REASON in r.text)
    assert "oscar-operator" in row.text and BREAKER in row.text
    page.screenshot("audit")

    # Resolve: what the calling app gets.
    page.go("#/resolve")
    page.testid("resolve-app").send_keys(APP)
    page.testid("resolve-submit").click()
    page.wait(lambda: TARGET in page.text("resolve-result"), what="the resolved policies")
    assert "consecutiveFailures >= 3" in page.text("resolve-result")
    assert SPEC in page.text("resolve-result")

    # Clearing the override from the page lets calls through again.
    page.go(BREAKER_PAGE)
    page.wait(lambda: page.text("breaker-title") == BREAKER, what="the breaker's page again")
    page.testid("action-clear").click()
    page.confirm()
    page.wait(lambda: page.text("action-result").startswith("Done"), what="the override cleared")
    marks = [len(agent.events) for agent in agents]
    for agent, mark in zip(agents, marks, strict=True):
        agent.wait_for(called_since(mark, "ok"), 10,
                       "calls passing after the override is cleared")


def test_a_viewer_sees_disabled_actions_and_the_server_refuses_it(
    fleet: tuple[ConsoleServer, list[AgentProcess]], new_page: Callable[[str], ConsolePage],
) -> None:
    server, agents = fleet
    page = new_page(server.url)
    page.open(BREAKER_PAGE, token=token("viewer"))
    page.wait(lambda: page.text("breaker-title") == BREAKER, what="the breaker's page")
    assert not any(page.testid(action).is_enabled() for action in ACTIONS)

    key = {"namespace": "default", "spec": SPEC, "kind": "TARGET_KIND_APP", "target": TARGET,
           "method": METHOD}
    status, body = page.fetch_json("fusebox.v1.BreakerService/SetOverride", {
        "key": key, "override": "BREAKER_OVERRIDE_FORCE_OPEN", "reason": "viewer tries"},
        token("viewer"))
    assert status == 403 and body["code"] == "permission_denied", (status, body)
    # No token at all is not a viewer either.
    status, body = page.fetch_json("fusebox.v1.BreakerService/GetBreaker", {"key": key}, "nope")
    assert status == 401 and body["code"] == "unauthenticated", (status, body)

    # The agents never saw an override.
    assert all(e.get("origin") != "operator" for agent in agents for e in agent.events)
    assert server.breakers()[0].override.override == 0

    # Signing out forgets the token (sessionStorage) and shows the form again.
    page.testid("signout").click()
    page.wait(lambda: page.visible("signin-token"), what="the sign-in form after signing out")
    assert page.driver.execute_script("return sessionStorage.length") == 0
    assert page.driver.get_cookies() == []
