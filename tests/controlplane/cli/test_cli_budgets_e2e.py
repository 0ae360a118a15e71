"""`fusebox budgets list/get` against a real server holding a budget: one instance
connected over the Connect stream (a raw client reporting usage), the CLI in-process."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from fusebox.controlplane.cli import main
from fusebox.controlplane.server import ServerConfig
from fusebox.v1 import agent_pb2, agent_pb2_grpc, spec_pb2, spec_pb2_grpc
from tests.controlplane.server.budget_support import KEY, SPEC, usage
from tests.security.conftest import ServerThread

DEADLINE = 20.0


@pytest.fixture(scope="module")
def address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    directory = tmp_path_factory.mktemp("budgets-cli")
    server = ServerThread(ServerConfig(listen="127.0.0.1:0", store_url="memory://",
                                       data_dir=Path(directory), budget_refresh=0.05)).start()
    requests: queue.Queue[agent_pb2.ConnectRequest | None] = queue.Queue()

    def stream() -> Iterator[agent_pb2.ConnectRequest]:
        while (request := requests.get()) is not None:
            yield request

    with grpc.insecure_channel(server.address) as channel:
        spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(spec_pb2.ApplySpecRequest(yaml=SPEC),
                                                         timeout=DEADLINE)
        # The stream's deadline bounds the wait for the first shares below.
        responses = agent_pb2_grpc.AgentServiceStub(channel).Connect(stream(), timeout=120)
        requests.put(agent_pb2.ConnectRequest(hello=agent_pb2.Hello(
            app_id="checkout", instance_id="checkout-1")))
        requests.put(agent_pb2.ConnectRequest(report=agent_pb2.OutcomeReport(
            budgets=[usage(KEY, 0.5, 20, 0)], sequence=1)))
        for response in responses:
            if response.WhichOneof("message") == "budget_shares":
                break
        try:
            yield server.address
        finally:
            requests.put(None)
            responses.cancel()
            server.stop()


def run(address: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--server", address, "budgets", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_each_budget_with_its_rate_and_instances(
    address: str, capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(address, capsys, "list")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["BUDGET", "POLICY", "FLEET", "RATE", "ADMITTED", "REFUSED", "USE",
                              "INSTANCES", "FREE"]
    assert row.split()[:3] == [str(KEY), "fleetLimit", "100.0/s"]
    assert row.split()[-2] == "1"


def test_list_as_json_and_of_an_empty_namespace(
    address: str, capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(address, capsys, "list", "-o", "json")
    [budget] = json.loads(out)["budgets"]
    assert budget["displayName"] == str(KEY)
    assert budget["rateLimit"]["limit"] == 100
    assert [i["instanceId"] for i in budget["instances"]] == ["checkout-1"]
    code, out, err = run(address, capsys, "list", "-n", "elsewhere")
    assert (code, out) == (0, "")
    assert 'no fleet budgets found in namespace "elsewhere"' in err


@pytest.mark.parametrize("name", [str(KEY), "fleetLimit", "upstream"])
def test_get_by_key_policy_name_or_target_shows_the_shares(
    address: str, capsys: pytest.CaptureFixture[str], name: str,
) -> None:
    code, out, _ = run(address, capsys, "get", name)
    assert code == 0
    assert f"Budget:     {KEY}" in out
    assert "rate limit fleetLimit: 100 per 1s, burst 100" in out
    assert "checkout-1" in out and "live" in out


def test_get_as_yaml_and_json(address: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(address, capsys, "get", "fleetLimit", "-o", "json")
    assert code == 0 and json.loads(out)["fleetSize"] == 1
    code, out, _ = run(address, capsys, "get", "fleetLimit", "-o", "yaml")
    assert code == 0 and "displayName:" in out


def test_get_of_an_unknown_budget_fails_with_suggestions(
    address: str, capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(address, capsys, "get", "fleetLimt")
    assert code == 1
    assert 'no fleet budget named "fleetLimt"' in err
