"""`fusebox breakers …` end to end: a real `fusebox serve` process, a real agent, the CLI.

Breakers exist once an agent reports outcomes for them, so the test runs an
``fusebox.agent.Agent`` against the server, makes a guarded call to a dead upstream
fail until the breaker trips, and then drives every breakers command as a
subprocess, as an operator would.
"""

from __future__ import annotations

import json
import os
import pty
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fusebox.agent import Agent, BreakerOpenError, Target
from tests.support.eventually import eventually
from tests.support.processes import ServerProcess, child_env
from tests.support.specs import REPOSITORY

pytestmark = pytest.mark.e2e

DEADLINE_SECONDS = 30.0
INSTANCE_ID = "checkout-e2e-1"
FULL_KEY = "default/breaker-e2e/app/order-processor/orders"

# No retries (each failing call is one outcome) and an open timeout long
# enough that the breaker stays open while the test looks at it.
SPEC = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: breaker-e2e
scopes:
  - checkout
spec:
  policies:
    circuitBreakers:
      threeStrikes:
        maxRequests: 1
        timeout: 1h
        trip: consecutiveFailures >= 3
  targets:
    apps:
      order-processor:
        circuitBreaker: threeStrikes
"""


def fusebox(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusebox.controlplane.cli", "--server", address, *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE_SECONDS,
        cwd=REPOSITORY,
        env=child_env(),
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout




class WatchProcess:
    """`fusebox breakers watch` piped: its JSON lines, read by a thread into a queue."""

    def __init__(self, address: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fusebox.controlplane.cli",
                "--server",
                address,
                "breakers",
                "watch",
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPOSITORY,
            env=child_env(),
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def next_event_where(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        end = time.monotonic() + DEADLINE_SECONDS
        while True:
            remaining = end - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.0, remaining))
            except queue.Empty:
                raise AssertionError(
                    f"watch printed no matching event; stderr: {self.stop()[1]}"
                ) from None
            event: dict[str, Any] = json.loads(line)
            if predicate(event):
                return event

    def stop(self) -> tuple[int, str]:
        """Ctrl-C, as a person at a terminal would; returns the exit code and stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        assert self.process.stderr is not None
        return code, self.process.stderr.read()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with the spec applied and order-processor:orders tripped by an agent."""
    with ServerProcess(tmp_path_factory.mktemp("fusebox-breakers")) as process:
        workdir = tmp_path_factory.mktemp("breakers-e2e")
        spec = workdir / "resiliency.yaml"
        spec.write_text(SPEC)
        ok(fusebox(process.address, "apply", "-f", str(spec)))
        trip_the_breaker(process.address, workdir)
        yield process.address


def server_state(address: str) -> str | None:
    """The breaker's state on the server, or None while it does not exist there."""
    result = fusebox(address, "breakers", "get", FULL_KEY, "-o", "json")
    if result.returncode != 0:
        return None
    state: str = json.loads(result.stdout)["state"]
    return state


def rejects(target: Target) -> bool:
    try:
        target.call(dead_upstream)
    except BreakerOpenError:
        return True
    except ConnectionRefusedError:
        return False
    raise AssertionError("the dead upstream answered")


def dead_upstream() -> None:
    raise ConnectionRefusedError("order-processor is down")


def trip_the_breaker(address: str, tmp_path: Path) -> None:
    """A checkout agent fails against order-processor until the cluster breaker opens."""
    with Agent(
        app_id="checkout",
        server=address,
        instance_id=INSTANCE_ID,
        cache_path=tmp_path / "policies.bin",
    ) as fb:
        eventually(lambda: (
                fb.policies is not None
                and any(t.name == "order-processor" for t in fb.policies.targets)
            ), deadline=DEADLINE_SECONDS, what="the agent to receive its policies")
        target = fb.app("order-processor", method="orders")

        def one_more_failure_then_ask_the_server() -> bool:
            # Calls keep coming, as in a live service: the policies can arrive a
            # moment before the agent follows the cluster, and outcomes of that
            # moment stay local.
            rejects(target)
            return server_state(address) == "open"

        eventually(one_more_failure_then_ask_the_server,
                   deadline=DEADLINE_SECONDS, what="the server to open the breaker")
        eventually(lambda: rejects(target),
                   deadline=DEADLINE_SECONDS, what="the agent to fail fast")


def test_breaker_tripped_by_an_agent_is_listed_watched_overridden_and_reset(server: str) -> None:
    watch = WatchProcess(server, "-o", "json")
    try:
        # watch: the snapshot comes first, one JSON line per breaker.
        tripped = watch.next_event_where(lambda e: e["breaker"]["name"] == FULL_KEY)
        assert tripped["snapshot"] is True
        assert tripped["transition"] is None
        assert tripped["breaker"]["state"] == "open"
        assert tripped["revision"]

        # list: the table and the JSON agree on the state.
        rows = ok(fusebox(server, "breakers", "list")).splitlines()
        assert rows[0].split()[:5] == ["NAMESPACE", "SPEC", "KIND", "NAME", "STATE"]
        row = next(r.split() for r in rows[1:] if "order-processor:orders" in r)
        assert row[:6] == ["default", "breaker-e2e", "app", "order-processor:orders", "open", "-"]
        listed = json.loads(
            ok(fusebox(server, "breakers", "list", "--state", "open", "-o", "json"))
        )
        [shown] = [b for b in listed["breakers"] if b["name"] == FULL_KEY]
        assert shown["generation"] >= 1
        assert shown["counts"]["requests"] == 0  # gobreaker clears the counts on a transition
        assert shown["openUntil"] is not None
        closed = json.loads(
            ok(fusebox(server, "breakers", "list", "--state", "closed", "-o", "json"))
        )
        assert FULL_KEY not in [b["name"] for b in closed["breakers"]]

        # get: by display name; the transition names its cause and the reporting agent.
        got = json.loads(
            ok(fusebox(server, "breakers", "get", "order-processor:orders", "-o", "json"))
        )
        last = got["recentTransitions"][-1]
        assert (last["from"], last["to"], last["cause"]) == ("closed", "open", "trip")
        assert last["instanceId"] == INSTANCE_ID
        assert got["policy"]["trip"] == "consecutiveFailures >= 3"
        details = ok(fusebox(server, "breakers", "get", "order-processor:orders"))
        assert INSTANCE_ID in details

        # close with a TTL: forced closed, the override carries the reason and expiry.
        ok(
            fusebox(
                server,
                "breakers",
                "close",
                "order-processor:orders",
                "--reason",
                "drill",
                "--ttl",
                "10m",
            )
        )
        # The watch is live by now (it printed a line): the override comes as a transition.
        overridden = watch.next_event_where(lambda e: e["breaker"]["name"] == FULL_KEY)
        assert overridden["snapshot"] is False
        assert overridden["revision"] != tripped["revision"]
        assert (overridden["transition"]["from"], overridden["transition"]["to"]) == (
            "open",
            "closed",
        )
        assert overridden["transition"]["cause"] == "override"
        assert overridden["breaker"]["override"]["override"] == "force-closed"
        forced = json.loads(ok(fusebox(server, "breakers", "get", FULL_KEY, "-o", "json")))
        assert forced["state"] == "closed"
        assert forced["override"]["override"] == "force-closed"
        assert forced["override"]["reason"] == "drill"
        assert forced["override"]["expireTime"] is not None

        # clear, then reset: back to closed with zeroed counts, the cause recorded.
        ok(fusebox(server, "breakers", "clear", "order-processor:orders"))
        assert (
            json.loads(ok(fusebox(server, "breakers", "get", FULL_KEY, "-o", "json")))["override"]
            is None
        )
        ok(fusebox(server, "breakers", "reset", FULL_KEY, "--reason", "upstream fixed"))
        after = json.loads(ok(fusebox(server, "breakers", "get", FULL_KEY, "-o", "json")))
        assert after["counts"]["requests"] == 0
        assert after["generation"] > got["generation"]
        assert after["state"] == "closed"
        last = after["recentTransitions"][-1]
        assert (last["to"], last["cause"]) == ("closed", "reset")
        assert "upstream fixed" in last["detail"]
    finally:
        code, err = watch.stop()
    assert code == 0, err


def test_unknown_breaker_and_missing_reason_exit_1_and_2(server: str) -> None:
    missing = fusebox(server, "breakers", "get", "default/breaker-e2e/app/nobody/here")
    assert missing.returncode == 1
    assert "error:" in missing.stderr
    assert fusebox(server, "breakers", "open", FULL_KEY).returncode == 2


def test_watch_in_a_terminal_draws_a_live_table_and_ctrl_c_exits_0(server: str) -> None:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "fusebox.controlplane.cli", "--server", server, "breakers", "watch"],
        stdin=subprocess.DEVNULL,
        stdout=terminal,
        stderr=subprocess.PIPE,
        cwd=REPOSITORY,
        env=child_env(),
    )
    os.close(terminal)
    screen = b""
    end = time.monotonic() + DEADLINE_SECONDS
    try:
        while b"order-processor:orders" not in screen:
            ready, _, _ = select.select([controller], [], [], max(0.0, end - time.monotonic()))
            if not ready:
                raise AssertionError(f"no table drawn; the terminal shows {screen!r}")
            screen += os.read(controller, 65536)
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=DEADLINE_SECONDS)
        os.close(controller)
    assert code == 0
    assert screen.startswith(b"\x1b[H")  # redrawn in place, from the top left
    frame = screen.rsplit(b"\x1b[H", 1)[-1].decode()
    assert f"circuit breakers at {server}" in frame
    assert "NAMESPACE" in frame
    assert not frame.lstrip().startswith("{")  # a table, not JSON lines
