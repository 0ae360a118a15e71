"""The example app of deploy/kubernetes/example, run as its pods run it (the same scripts,
configured by FUSEBOX_* variables only) against a real control plane: orders pass under
the example spec's policies, and /readyz follows the agent's readiness."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fusebox.controlplane.cli import ExitCode, main
from tests.support.processes import ServerProcess, child_env
from tests.support.redis_server import free_port
from tests.support.specs import REPOSITORY

pytestmark = pytest.mark.e2e

EXAMPLE = REPOSITORY / "deploy" / "kubernetes" / "example"
DEADLINE = 30.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path)
    process.start()
    yield process
    process.stop()


def readiness(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def wait_for(what: str, check: Callable[[], bool], deadline: float = DEADLINE) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} within {deadline}s")


def test_checkout_sends_orders_through_an_agent_configured_by_the_environment(
    server: ServerProcess, tmp_path: Path,
) -> None:
    spec = EXAMPLE / "resiliency.yaml"
    assert main(["--server", server.address, "apply", "-f", str(spec)]) == ExitCode.OK
    orders_port, health_port = free_port(), free_port()
    order_log, checkout_log = tmp_path / "order-processor.log", tmp_path / "checkout.log"
    with order_log.open("w") as out:
        order_processor = subprocess.Popen(
            [sys.executable, str(EXAMPLE / "app" / "order_processor.py"), "--host", "127.0.0.1",
             "--port", str(orders_port)], stdout=out, stderr=subprocess.STDOUT, env=child_env())
    env = child_env(
        FUSEBOX_SERVER=server.address, FUSEBOX_APP_ID="checkout", FUSEBOX_NAMESPACE="shop",
        FUSEBOX_INSTANCE_ID="checkout-test-1", FUSEBOX_CACHE_DIR=str(tmp_path / "cache"),
        ORDER_PROCESSOR_URL=f"http://127.0.0.1:{orders_port}", HEALTH_PORT=str(health_port),
        ORDER_INTERVAL="0.05",
    )
    with checkout_log.open("w") as out:
        checkout = subprocess.Popen([sys.executable, str(EXAMPLE / "app" / "checkout.py")],
                                    stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_for("checkout ready", lambda: readiness(health_port) == 200)
        wait_for("three orders received",
                 lambda: order_log.read_text().count("Order received") >= 3)
        text = checkout_log.read_text()
        assert 'Order passed: {"orderId": 1, "checkout": "checkout-test-1"}' in text, text
        assert "policies from control plane" in text  # the spec's, not pass-through
        assert "calls pass through unguarded" not in text, text
    finally:
        checkout.terminate()  # SIGTERM: the loop stops and the agent closes
        code = checkout.wait(timeout=DEADLINE)
        order_processor.terminate()
        order_processor.wait(timeout=DEADLINE)
    assert code == 0, checkout_log.read_text()
    assert (tmp_path / "cache" / "shop__checkout.cached-policies.pb").is_file()
