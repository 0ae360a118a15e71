"""The CLI as a Unix tool, as real processes against a real `fusebox serve`: output
piped into `head` ends quietly, bad `--server` values say what is wrong, an
unknown breaker name suggests the closest ones.

The server holds a few hundred breakers (overrides set ahead of use, so no
agent is needed), which makes `breakers list -o json` and a watch's snapshot
far longer than a pipe's buffer: `head -1` then always exits while the CLI is
still writing.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest

from fusebox.v1 import breaker_pb2, breaker_pb2_grpc, policy_pb2
from tests.support.processes import ServerProcess, child_env
from tests.support.redis_server import free_port
from tests.support.specs import REPOSITORY

pytestmark = pytest.mark.e2e

DEADLINE_SECONDS = 30.0
BULK_BREAKERS = 300  # each about 1 KB of JSON: several times a pipe's 64 KiB
CLI = [sys.executable, "-m", "fusebox.controlplane.cli"]

SPEC = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: unix-e2e
spec:
  policies:
    circuitBreakers:
      simpleCB:
        maxRequests: 1
        timeout: 30s
        trip: consecutiveFailures >= 5
  targets:
    apps:
      order-processor:
        circuitBreaker: simpleCB
      bulk:
        circuitBreaker: simpleCB
"""


def fusebox(*args: str, server: str | None = None) -> subprocess.CompletedProcess[str]:
    address = ["--server", server] if server else []
    return subprocess.run(
        [*CLI, *address, *args], capture_output=True, text=True, timeout=DEADLINE_SECONDS,
        cwd=REPOSITORY, env=child_env(), check=False,
    )


def piped(command: str, reader: str = "head -1") -> subprocess.CompletedProcess[str]:
    """``fusebox COMMAND | READER`` through sh; stderr ends with fusebox's own exit status."""
    cli = " ".join(shlex.quote(part) for part in CLI)
    script = f'{{ {cli} {command}; echo "fusebox exit status $?" >&2; }} | {reader}'
    return subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=DEADLINE_SECONDS,
        cwd=REPOSITORY, env=child_env(), check=False,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("unix-e2e")
    with ServerProcess(workdir) as process:
        spec = workdir / "resiliency.yaml"
        spec.write_text(SPEC)
        applied = fusebox("apply", "-f", str(spec), server=process.address)
        assert applied.returncode == 0, applied.stderr
        with grpc.insecure_channel(process.address) as channel:
            stub = breaker_pb2_grpc.BreakerServiceStub(channel)
            methods = [("order-processor", "orders")] + [
                ("bulk", f"m{i:03d}") for i in range(BULK_BREAKERS)]
            for target, method in methods:
                stub.SetOverride(breaker_pb2.SetOverrideRequest(
                    key=policy_pb2.BreakerKey(
                        namespace="default", spec="unix-e2e", kind=policy_pb2.TARGET_KIND_APP,
                        target=target, method=method),
                    override=breaker_pb2.BREAKER_OVERRIDE_FORCE_CLOSED,
                    reason="made for a long listing"), timeout=DEADLINE_SECONDS)
        yield process.address


def assert_quiet(stderr: str) -> None:
    for noise in ("Traceback", "BrokenPipeError", "Exception ignored", "error:"):
        assert noise not in stderr, stderr


@pytest.mark.parametrize(
    "command",
    ["breakers list -o json", "breakers watch -o json", "breakers watch"],  # watch: piped = JSON
)
def test_output_piped_into_head_ends_quietly_with_141(server: str, command: str) -> None:
    result = piped(f"--server {server} {command}")
    assert result.returncode == 0  # head's
    assert len(result.stdout.splitlines()) == 1
    assert_quiet(result.stderr)
    assert result.stderr.splitlines()[-1] == "fusebox exit status 141"


def test_a_reader_gone_before_the_last_flush_is_just_as_quiet(server: str) -> None:
    # `true` reads nothing and is gone long before the CLI has its answer: the one
    # write of a short output happens at the final flush.
    result = piped(f"--server {server} breakers get order-processor:orders", reader="true")
    assert_quiet(result.stderr)
    assert result.stderr.splitlines()[-1] == "fusebox exit status 141"


def test_a_whole_output_read_by_its_reader_exits_0(server: str) -> None:
    result = piped(f"--server {server} breakers list -o json", reader="cat")
    assert result.stderr.splitlines() == ["fusebox exit status 0"]
    assert result.stdout.count('"displayName"') == BULK_BREAKERS + 1


def test_a_server_address_with_a_scheme_exits_2_saying_what_to_write(server: str) -> None:
    result = fusebox("breakers", "list", server=f"http://{server}")
    assert result.returncode == 2
    assert result.stderr == (
        f"error: --server 'http://{server}': a URL scheme (http://) is not accepted; write "
        f"HOST:PORT, e.g. {server} (accepted: HOST:PORT, [IPV6]:PORT, "
        "dns:[//AUTHORITY/]HOST:PORT, ipv4:ADDR:PORT[,ADDR:PORT...], ipv6:[ADDR]:PORT[,...], "
        "unix:PATH, unix-abstract:NAME)\n"
    )


def test_a_server_address_without_a_port_exits_2_saying_what_to_write() -> None:
    result = fusebox("get", "specs", server="localhost")
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: --server 'localhost': no port; write HOST:PORT, e.g. localhost:50051 (accepted: "
    )


def test_a_host_that_does_not_resolve_exits_3_saying_so() -> None:
    result = fusebox("--timeout", "5", "breakers", "list", server="no-such-host.invalid:50051")
    assert result.returncode == 3
    assert result.stderr.startswith(
        "error: cannot reach the Fusebox server at no-such-host.invalid:50051: the host "
        "'no-such-host.invalid' does not resolve"
    )
    assert result.stderr.rstrip().endswith("check the name, or give an IP address")


def test_an_address_list_of_replicas_keeps_working(server: str) -> None:
    # As agents take it: gRPC uses the first address that answers.
    result = fusebox("breakers", "get", "order-processor:orders", "-o", "json",
                     server=f"ipv4:127.0.0.1:{free_port()},{server}")
    assert result.returncode == 0, result.stderr
    assert '"displayName": "order-processor:orders"' in result.stdout


def test_an_unknown_breaker_name_suggests_the_closest_ones(server: str) -> None:
    result = fusebox("breakers", "get", "order-procesor:orders", server=server)
    assert result.returncode == 1
    assert result.stderr == (
        'error: no circuit breaker named "order-procesor:orders" '
        '(did you mean "order-processor:orders"?)\n'
    )
    by_key = fusebox("breakers", "reset", "default/unix-e2e/app/order-processor/order",
                     "--reason", "r", server=server)
    assert by_key.returncode == 1
    assert by_key.stderr.rstrip().endswith(
        '(did you mean "default/unix-e2e/app/order-processor/orders"?)')
