"""The page's live feed outlives a server restart.

The server process is stopped and started again on the same ports while the
page stays open: the live status says ``reconnecting``, then ``live`` again,
and a trip after the restart shows without a reload. On Redis the feed resumes
from its last event id; on the embedded store (breaker state in memory) the
server cannot resume, says ``reset`` and sends a fresh snapshot.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.browser.fleet import BREAKER, ConsoleServer, spec_yaml, start_agent, token, wait_ready
from tests.chaos.support import FAIL, ChaosUpstream, metric
from tests.support.browser import ConsolePage
from tests.support.eventually import eventually
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.e2e

SPEC = "restart"


@pytest.mark.parametrize("store", ["redis", "embedded"])
def test_the_feed_reconnects_after_a_server_restart_and_shows_the_next_trip(
    tmp_path: Path, store: str, upstream: ChaosUpstream,
    new_page: Callable[[str], ConsolePage],
) -> None:
    redis = RedisServer(tmp_path / "redis") if store == "redis" else None
    if redis is not None:
        redis.start()
    server = ConsoleServer(tmp_path, store_url=redis.url if redis else None)
    server.start()
    agent = None
    try:
        server.apply(spec_yaml(SPEC, threshold=3, timeout="30s"))
        agent = start_agent(tmp_path, server, "a0", upstream.url("a0"))
        wait_ready(agent)
        page = new_page(server.url)
        page.open("#/breakers", token=token("viewer"))
        page.wait(lambda: page.text("live-status") == "live", what="the feed live")
        page.wait(lambda: page.row_state(BREAKER) == "closed", what="the breaker listed")
        page.driver.execute_script("window.__marker = 'before the restart';")

        server.stop()
        page.wait(lambda: page.text("live-status") == "reconnecting",
                  what="the page noticing the server went away")
        server.start()
        took = page.wait(lambda: page.text("live-status") == "live", deadline=20,
                         what="the feed live again")
        print(f"{store}: feed live again {took:.2f}s after the server answered")

        # The agent's outcomes reach the fleet once it is connected again (until then its
        # local breaker alone would trip, and the server would not hear of it).
        eventually(lambda: metric(server.http_port, "fusebox_connected_agents") == 1,
                   deadline=30, what="the agent connected to the restarted server")
        upstream.mode = FAIL
        page.wait(lambda: page.row_state(BREAKER) == "open", deadline=20,
                  what="the trip after the restart on the page")
        assert page.driver.execute_script("return window.__marker") == "before the restart"
        assert page.text("live-status") == "live"
    finally:
        if agent is not None:
            agent.stop()
        server.stop()
        if redis is not None:
            redis.stop()
