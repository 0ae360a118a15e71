"""The board under load: 1,000 breakers and a transition every 10 ms.

A real server holds 1,000 breakers (overrides set ahead of use on 1,000
methods of one target); a thread flips one of them every 10 ms through gRPC
(force open, then clear, round robin) for a few seconds while the board is
open. The page must end up showing what the server holds for every row. Its
frame rate, longest task and the row changes it rendered are printed, not
asserted (a shared machine); bench/console_feed.py measures the server's side.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from fusebox.v1 import breaker_pb2, breaker_pb2_grpc
from tests.browser.fleet import TARGET, ConsoleServer, app_key, spec_yaml, token
from tests.support.browser import ConsolePage

pytestmark = pytest.mark.e2e

SPEC = "load"
BREAKERS = 1000
INTERVAL = 0.010
SECONDS = 5.0

#: Counts frames, long tasks and rendered state changes while the flips run.
PROBE = """
const probe = window.__probe = {frames: 0, changes: 0, longest: 0, longTotal: 0,
                                start: performance.now(), end: 0};
(function frame() { if (!probe.end) { probe.frames++; requestAnimationFrame(frame); } })();
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    probe.longest = Math.max(probe.longest, e.duration);
    probe.longTotal += e.duration;
  }
}).observe({type: 'longtask'});
new MutationObserver((mutations) => {
  for (const m of mutations) {
    if (m.target.nodeType === 1 && m.target.closest('[data-field="state"]')) probe.changes++;
  }
}).observe(document.querySelector('[data-testid="breaker-row"]').parentElement,
           {subtree: true, childList: true});
"""


def method(i: int) -> str:
    return f"m{i:04d}"


def test_the_board_keeps_up_with_a_transition_every_10_ms_on_1000_breakers(
    console: ConsoleServer, new_page: Callable[[str], ConsolePage],
) -> None:
    console.apply(spec_yaml(SPEC))
    forced: list[bool] = [False] * BREAKERS
    with console.channel() as channel:
        stub = breaker_pb2_grpc.BreakerServiceStub(channel)
        metadata = console.metadata("operator")

        def flip(i: int) -> None:
            override = (breaker_pb2.BREAKER_OVERRIDE_UNSPECIFIED if forced[i]
                        else breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN)
            stub.SetOverride(breaker_pb2.SetOverrideRequest(
                key=app_key(SPEC, TARGET, method(i)), override=override, reason="load"),
                metadata=metadata, timeout=10)
            forced[i] = not forced[i]

        for i in range(BREAKERS):  # every breaker exists, forced open
            flip(i)
        page = new_page(console.url)
        started = time.monotonic()
        page.open("#/breakers", token=token("viewer"))
        page.wait(lambda: len(page.rows()) == BREAKERS, deadline=30, what="1,000 rows")
        print(f"\nboard: {BREAKERS} rows shown {time.monotonic() - started:.2f}s after loading")
        page.driver.execute_script(PROBE)

        flips = 0
        stop = threading.Event()

        def driver() -> None:
            nonlocal flips
            next_at = time.monotonic()
            while not stop.is_set():
                flip(flips % BREAKERS)
                flips += 1
                next_at += INTERVAL
                stop.wait(max(0.0, next_at - time.monotonic()))

        thread = threading.Thread(target=driver, daemon=True)
        thread.start()
        time.sleep(SECONDS)  # the load's duration, not a wait for a condition
        stop.set()
        thread.join(timeout=30)
        probe = page.driver.execute_script(
            "window.__probe.end = performance.now(); return window.__probe;")

    def matches() -> bool:
        rows = page.rows()
        return all(rows[f"{TARGET}:{method(i)}"]["state"]
                   == ("forced open" if forced[i] else "closed") for i in range(BREAKERS))

    page.wait(matches, deadline=20, what="every row showing the server's state")
    seconds = (probe["end"] - probe["start"]) / 1000
    print(f"load: {flips} transitions in {SECONDS:.0f}s ({flips / SECONDS:.0f}/s produced); "
          f"page: {probe['frames'] / seconds:.0f} frames/s, {probe['changes']} state cells "
          f"changed ({probe['changes'] / seconds:.0f}/s), longest task "
          f"{probe['longest']:.0f} ms, {probe['longTotal']:.0f} ms in long tasks")
    assert flips > 0 and probe["changes"] > 0
