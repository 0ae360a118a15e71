"""A real `fusebox serve`: tokens reloaded on SIGHUP, and the safe defaults."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2

from fusebox.v1 import spec_pb2, spec_pb2_grpc
from tests.security.conftest import token_of, tokens_yaml
from tests.support.eventually import eventually
from tests.support.processes import ServerProcess, child_env, wait_for_health
from tests.support.redis_server import free_port
from tests.support.specs import REPOSITORY

pytestmark = pytest.mark.e2e  # starts processes

DEADLINE = 20.0


def list_status(address: str, token: str) -> grpc.StatusCode:
    with grpc.insecure_channel(address) as channel:
        try:
            spec_pb2_grpc.SpecServiceStub(channel).ListSpecs(
                spec_pb2.ListSpecsRequest(), metadata=(("authorization", f"Bearer {token}"),),
                timeout=DEADLINE)
        except grpc.RpcError as e:
            code: grpc.StatusCode = e.code()
            return code
    return grpc.StatusCode.OK




def test_sighup_reloads_the_tokens_file_and_a_broken_file_keeps_the_previous(
    tmp_path: Path,
) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(tokens_yaml(["alice-admin"]))
    with ServerProcess(tmp_path, extra_args=("--tokens-file", str(tokens))) as server:
        assert server.process is not None
        viewer = token_of("vera-viewer")
        assert list_status(server.address, viewer) is grpc.StatusCode.UNAUTHENTICATED

        tokens.write_text(tokens_yaml(["vera-viewer"]))
        server.process.send_signal(signal.SIGHUP)
        eventually(lambda: list_status(server.address, viewer) is grpc.StatusCode.OK,
                   deadline=DEADLINE, what="the viewer token being accepted")
        assert list_status(server.address, token_of("alice-admin")) is (
            grpc.StatusCode.UNAUTHENTICATED
        )
        assert "tokens file reloaded" in server.log.read_text()

        tokens.write_text("tokens:\n  - name: broken\n    role: superuser\n")
        server.process.send_signal(signal.SIGHUP)
        eventually(lambda: "tokens file not reloaded" in server.log.read_text(),
                   deadline=DEADLINE, what="the failed reload being logged")
        assert "tokens[0].sha256" in server.log.read_text()
        assert list_status(server.address, viewer) is grpc.StatusCode.OK


def serve(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "fusebox.controlplane.cli", "serve", "--store", "memory://", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPOSITORY, env=child_env(),
    )


def test_a_non_loopback_address_without_auth_exits_2_naming_insecure() -> None:
    process = serve("--listen", f"0.0.0.0:{free_port()}")
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert b"--insecure" in output
    assert b"--tokens-file" in output


def test_insecure_allows_a_non_loopback_address_and_says_it_is_unauthenticated(
    tmp_path: Path,
) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "fusebox.controlplane.cli", "serve", "--store", "memory://",
             "--data-dir", str(tmp_path), "--listen", f"0.0.0.0:{port}", "--insecure"],
            stdout=log_file, stderr=subprocess.STDOUT, cwd=REPOSITORY, env=child_env(),
        )
    try:
        # Bound on every interface; this test only ever connects to loopback.
        wait_for_health(f"127.0.0.1:{port}", health_pb2.HealthCheckResponse.SERVING,
                        deadline=60, process=process, log=log)
        assert "no authentication" in log.read_text()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_a_broken_tokens_file_stops_the_start_with_exit_2(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("tokens:\n  - name: x\n    sha256: abc\n    role: admin\n")
    process = serve("--listen", f"127.0.0.1:{free_port()}", "--tokens-file", str(tokens))
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2
    assert b"tokens[0].sha256" in output
