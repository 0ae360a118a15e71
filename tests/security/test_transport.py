"""TLS and mTLS: who can connect, and the agent and CLI over both."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from fusebox.agent import AsyncAgent
from fusebox.controlplane.cli import ExitCode, main
from fusebox.v1 import audit_pb2, audit_pb2_grpc, spec_pb2, spec_pb2_grpc
from tests.security.certs import Issued, Pki
from tests.security.conftest import StartServer, token_of
from tests.support.specs import SEED_SPEC

DEADLINE = 10.0


def list_specs(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> object:
    return spec_pb2_grpc.SpecServiceStub(channel).ListSpecs(
        spec_pb2.ListSpecsRequest(), metadata=metadata, timeout=DEADLINE)


def tls_channel(address: str, ca: Path, client: Issued | None = None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )
    return grpc.secure_channel(address, credentials)


def refused(channel: grpc.Channel) -> grpc.StatusCode:
    with channel, pytest.raises(grpc.RpcError) as failure:
        list_specs(channel)
    code: grpc.StatusCode = failure.value.code()
    return code


@pytest.fixture
def tls_server(start_server: StartServer, pki: Pki) -> str:
    return start_server(tls_cert=pki.server.cert, tls_key=pki.server.key).address


@pytest.fixture
def mtls_server(start_server: StartServer, pki: Pki) -> str:
    return start_server(tls_cert=pki.server.cert, tls_key=pki.server.key,
                        tls_client_ca=pki.ca).address


def test_tls_refuses_a_plaintext_client(tls_server: str) -> None:
    assert refused(grpc.insecure_channel(tls_server)) is grpc.StatusCode.UNAVAILABLE


def test_tls_client_trusting_another_ca_refuses_the_server(tls_server: str, pki: Pki) -> None:
    assert refused(tls_channel(tls_server, pki.other_ca)) is grpc.StatusCode.UNAVAILABLE


def test_tls_client_trusting_the_ca_is_served(tls_server: str, pki: Pki) -> None:
    with tls_channel(tls_server, pki.ca) as channel:
        assert list_specs(channel) == spec_pb2.ListSpecsResponse()


def test_mtls_refuses_a_client_without_a_certificate(mtls_server: str, pki: Pki) -> None:
    assert refused(tls_channel(mtls_server, pki.ca)) is grpc.StatusCode.UNAVAILABLE


def test_mtls_refuses_a_certificate_from_another_ca(mtls_server: str, pki: Pki) -> None:
    channel = tls_channel(mtls_server, pki.ca, pki.other_client)
    assert refused(channel) is grpc.StatusCode.UNAVAILABLE


def test_mtls_serves_a_valid_client_and_names_it_by_its_certificate(
    mtls_server: str, pki: Pki
) -> None:
    with tls_channel(mtls_server, pki.ca, pki.client) as channel:
        spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
            spec_pb2.ApplySpecRequest(yaml=SEED_SPEC), timeout=DEADLINE)
        events = audit_pb2_grpc.AuditServiceStub(channel).ListAuditEvents(
            audit_pb2.ListAuditEventsRequest(), timeout=DEADLINE).events
    # principal(): the certificate's subject, recorded as who applied the spec.
    assert [e.actor for e in events] == ["CN=fusebox-test-client"]


@pytest.mark.parametrize("mutual", [False, True], ids=["tls", "mtls"])
async def test_the_agent_syncs_policies_over_tls_with_a_token(
    start_server: StartServer, pki: Pki, tokens_file: Path, tmp_path: Path, mutual: bool
) -> None:
    server = start_server(tls_cert=pki.server.cert, tls_key=pki.server.key,
                          tls_client_ca=pki.ca if mutual else None, tokens_file=tokens_file)
    with tls_channel(server.address, pki.ca, pki.client) as channel:
        spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
            spec_pb2.ApplySpecRequest(yaml=SEED_SPEC),
            metadata=(("authorization", f"Bearer {token_of('alice-admin')}"),),
            timeout=DEADLINE)
    client = {"tls_cert": pki.client.cert.read_bytes(), "tls_key": str(pki.client.key)}
    async with AsyncAgent(
        app_id="checkout", server=server.address, cache_path=tmp_path / "cache.pb",
        tls_ca=pki.ca, token=token_of("checkout-agents"), **(client if mutual else {}),
    ) as agent:
        assert await agent._link.wait_synced(DEADLINE)
        assert agent.policies is not None
        assert agent.policies.app_id == "checkout"
        assert any(t.circuit_breaker for t in agent.policies.targets)


async def test_an_agent_token_for_another_app_receives_no_policies(
    start_server: StartServer, pki: Pki, tokens_file: Path, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = start_server(tls_cert=pki.server.cert, tls_key=pki.server.key,
                          tokens_file=tokens_file)
    async with AsyncAgent(
        app_id="checkout", server=server.address, cache_path=tmp_path / "cache.pb",
        tls_ca=pki.ca, token=token_of("inventory-agents"), initial_fetch_timeout=0.2,
    ) as agent:
        async with asyncio.timeout(DEADLINE):
            while "refused this agent (PERMISSION_DENIED" not in caplog.text:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert agent.policies is None


def test_the_cli_talks_tls_with_a_token(
    start_server: StartServer, pki: Pki, tokens_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = start_server(tls_cert=pki.server.cert, tls_key=pki.server.key,
                          tokens_file=tokens_file)
    spec = tmp_path / "resiliency.yaml"
    spec.write_text(SEED_SPEC)
    token_file = tmp_path / "admin.token"
    token_file.write_text(token_of("alice-admin") + "\n")
    tls = ["--server", server.address, "--tls-ca", str(pki.ca)]

    assert main([*tls, "--token-file", str(token_file), "apply", "-f", str(spec)]) == ExitCode.OK
    assert "myresiliency" in capsys.readouterr().out

    assert main([*tls, "get", "specs", "--token", token_of("vera-viewer")]) == ExitCode.OK
    assert "myresiliency" in capsys.readouterr().out

    breaker = "default/myresiliency/app/order-processor/orders"
    assert main([*tls, "breakers", "open", breaker, "--reason", "x",
                 "--token", token_of("vera-viewer")]) == ExitCode.REJECTED
    assert "permission denied" in capsys.readouterr().err

    assert main([*tls, "get", "specs"]) == ExitCode.REJECTED
    assert "unauthenticated" in capsys.readouterr().err

    # Without --tls-ca the CLI speaks plaintext: the server is as good as unreachable.
    assert main(["--server", server.address, "get", "specs", "--timeout", "2"]) == (
        ExitCode.UNREACHABLE
    )
    assert "--tls-ca" in capsys.readouterr().err
