"""The Dapr quickstart under `fusebox run`: two unchanged-style HTTP apps, real processes.

order-processor and two checkout instances each run under their own sidecar
against one control plane. Orders flow; stopping order-processor makes the
checkouts' sidecars retry and trip one breaker shared by both; restarting it
recovers, and every order each checkout sent was received.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fusebox.v1 import breaker_pb2, breaker_pb2_grpc, policy_pb2
from tests.support.eventually import eventually
from tests.support.processes import ServerProcess, child_env
from tests.support.redis_server import free_port
from tests.support.specs import REPOSITORY

pytestmark = pytest.mark.e2e
DEADLINE = 30.0
APPS = Path(__file__).parent / "apps"
QUICKSTART = REPOSITORY / "examples" / "quickstart" / "resiliency.yaml"


class SidecarRun:
    """`python -m fusebox.controlplane.cli run ... -- python APP` with its output in a file."""

    def __init__(self, workdir: Path, name: str, server: str, args: list[str], app: str,
                 **env: str) -> None:
        self.output = workdir / f"{name}.out"
        argv = [sys.executable, "-m", "fusebox.controlplane.cli", "run", "--server", server, *args,
                "--", sys.executable, str(APPS / app)]
        with self.output.open("ab") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                            cwd=REPOSITORY, env=child_env(**env))

    def text(self) -> str:
        return self.output.read_text()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def outputs(*runs: SidecarRun) -> str:
    return "\n".join(f"--- {r.output.name}\n{r.text()[-3000:]}" for r in runs)


def passed(run: SidecarRun) -> list[str]:
    return [line.split("Order passed: ", 1)[1].strip()
            for line in run.text().splitlines() if "Order passed: " in line]


@pytest.fixture
def resources(tmp_path: Path) -> Path:
    directory = tmp_path / "resources"
    directory.mkdir()
    # The quickstart's spec with durations a test can wait for.
    text = QUICKSTART.read_text().replace("maxInterval: 5s", "duration: 50ms") \
        .replace("timeout: 5s", "timeout: 1s")
    (directory / "resiliency.yaml").write_text(text)
    (directory / "pubsub.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\n"
        "spec:\n  type: pubsub.redis\n  version: v1\n")
    return directory


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path) as process:
        yield process


def test_orders_flow_trip_is_shared_and_recovery_loses_no_order(
    tmp_path: Path, server: ServerProcess, resources: Path
) -> None:
    orders = tmp_path / "orders.txt"
    orders.touch()
    app_port = free_port()

    def order_processor(name: str) -> SidecarRun:
        return SidecarRun(tmp_path, name, server.address,
                          ["--app-id", "order-processor", "--app-port", str(app_port),
                           "--dapr-http-port", str(free_port())],
                          "order_processor.py", ORDERS_FILE=str(orders))

    processor = order_processor("order-processor-1")
    checkouts = [
        SidecarRun(tmp_path, f"checkout-{n}", server.address,
                   ["--app-id", "checkout", "--dapr-http-port", str(free_port()),
                    "--resources-path", str(resources)],
                   "checkout.py", CHECKOUT_NAME=f"c{n}")
        for n in (1, 2)
    ]
    runs = [processor, *checkouts]
    try:
        # 1. Orders flow from both checkouts, through their sidecars.
        eventually(lambda: all(len(passed(c)) >= 3 for c in checkouts),
                   deadline=DEADLINE, what="orders to flow",
                   details=lambda: outputs(*runs))
        assert "== APP == Order received : c1-1" in processor.text()
        assert "skipping" in checkouts[0].text()  # the component file is not a Resiliency
        assert "== APP == Order passed: c1-1" in checkouts[0].text()

        # 2. order-processor stops: retries, then one breaker trips for both checkouts.
        assert processor.stop() == 0
        eventually(lambda: all("circuit breaker is open" in c.text() for c in checkouts),
                   deadline=DEADLINE, what="both checkouts to see the open breaker",
                   details=lambda: outputs(*runs))
        assert "ERR_DIRECT_INVOKE" in checkouts[0].text()
        with grpc.insecure_channel(server.address) as channel:
            listed = breaker_pb2_grpc.BreakerServiceStub(channel).ListBreakers(
                breaker_pb2.ListBreakersRequest(), timeout=5)
        breakers = [b for b in listed.breakers if b.key.target == "order-processor"]
        assert [(b.key.method, b.key.kind) for b in breakers] == [
            ("orders", policy_pb2.TARGET_KIND_APP)
        ]
        # One breaker for the whole cluster, tripped (or already probing after its 1 s).
        assert breakers[0].state in (breaker_pb2.BREAKER_STATE_OPEN,
                                     breaker_pb2.BREAKER_STATE_HALF_OPEN)

        # 3. order-processor comes back: the breaker closes, orders flow again.
        before = {id(c): len(passed(c)) for c in checkouts}
        runs.append(processor := order_processor("order-processor-2"))
        eventually(lambda: all(len(passed(c)) >= before[id(c)] + 3 for c in checkouts),
                   deadline=DEADLINE, what="orders to flow again",
                   details=lambda: outputs(*runs))
    finally:
        codes = [run.stop() for run in runs]
    assert codes[-1] == 0

    # No order lost: every order a checkout saw accepted was received, in sequence.
    received = set(orders.read_text().split())
    for n, checkout in enumerate(checkouts, start=1):
        accepted = passed(checkout)
        assert accepted == [f"c{n}-{i}" for i in range(1, len(accepted) + 1)]
        assert set(accepted) <= received
