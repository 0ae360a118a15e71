"""The FUSEBOX_* contract end to end: an agent and a `fusebox run` sidecar configured by
the environment alone (as deploy/kubernetes/example/checkout.yaml configures them)
reach a control plane that requires TLS and a token, as the app and namespace the
variables name, with the instance id they name, and the agent caches its policies in
``FUSEBOX_CACHE_DIR``."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from fusebox.agent import Agent, PolicySource
from fusebox.controlplane.server.engines.sessions import AgentSession
from fusebox.controlplane.server.security.tokens import Role, TokenEntry, entry_yaml, hash_token
from fusebox.v1 import spec_pb2, spec_pb2_grpc
from tests.security.certs import Pki
from tests.security.conftest import ServerThread, StartServer
from tests.support.processes import child_env
from tests.support.redis_server import free_port
from tests.support.specs import REPOSITORY

pytestmark = pytest.mark.e2e

DEADLINE = 20.0
ADMIN_TOKEN = "fbx_env_admin_2c41"
AGENT_TOKEN = "fbx_env_checkout_shop_9e07"
EXAMPLE_SPEC = REPOSITORY / "deploy" / "kubernetes" / "example" / "resiliency.yaml"


@pytest.fixture
def shop_tokens(tmp_path: Path) -> Path:
    """An admin, and the agents of app checkout in namespace shop (the example's)."""
    path = tmp_path / "tokens.yaml"
    entries = [TokenEntry("deployer", hash_token(ADMIN_TOKEN), Role.ADMIN),
               TokenEntry("checkout-agents", hash_token(AGENT_TOKEN), Role.AGENT,
                          frozenset({"checkout"}), "shop")]
    path.write_text("tokens:\n" + "".join(entry_yaml(e) + "\n" for e in entries))
    return path


@pytest.fixture
def server(start_server: StartServer, pki: Pki, shop_tokens: Path) -> ServerThread:
    started = start_server(tls_cert=pki.server.cert, tls_key=pki.server.key,
                           tls_client_ca=None, tokens_file=shop_tokens)
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    with grpc.secure_channel(started.address, credentials) as channel:
        spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
            spec_pb2.ApplySpecRequest(yaml=EXAMPLE_SPEC.read_text(),
                                      source_name=str(EXAMPLE_SPEC)),
            metadata=(("authorization", f"Bearer {ADMIN_TOKEN}"),), timeout=DEADLINE)
    return started


def contract_env(server: ServerThread, pki: Pki, tmp_path: Path,
                 instance_id: str) -> dict[str, str]:
    token_file = tmp_path / "secrets" / "token"
    token_file.parent.mkdir(exist_ok=True)
    token_file.write_text(AGENT_TOKEN + "\n")
    return {
        "FUSEBOX_SERVER": server.address,
        "FUSEBOX_APP_ID": "checkout",
        "FUSEBOX_NAMESPACE": "shop",
        "FUSEBOX_INSTANCE_ID": instance_id,
        "FUSEBOX_TOKEN_FILE": str(token_file),
        "FUSEBOX_TLS_CA": str(pki.ca),
        "FUSEBOX_INITIAL_FETCH_TIMEOUT": "10",
        "FUSEBOX_CACHE_DIR": str(tmp_path / "cache"),
    }


def session_of(server: ServerThread, instance_id: str) -> AgentSession:
    assert server.server is not None
    end = time.monotonic() + DEADLINE
    while time.monotonic() < end:
        found = server.server.hub.find(instance_id)
        if found is not None:
            return found
        time.sleep(0.05)
    raise AssertionError(f"no agent {instance_id!r} connected within {DEADLINE}s")


def test_an_agent_from_the_environment_syncs_over_tls_with_its_token_file(
    server: ServerThread, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = contract_env(server, pki, tmp_path, "checkout-5f7c9-abcde")
    for name, value in env.items():  # FUSEBOX_CACHE_DIR is read where the cache is
        monkeypatch.setenv(name, value)
    with Agent.from_env() as fb:
        assert fb.policy_source is PolicySource.SERVER
        assert fb.policies is not None
        assert (fb.policies.namespace, fb.policies.app_id) == ("shop", "checkout")
        assert any(t.circuit_breaker for t in fb.policies.targets)
        session = session_of(server, "checkout-5f7c9-abcde")
        assert (session.namespace, session.app_id) == ("shop", "checkout")
    assert (tmp_path / "cache" / "shop__checkout.cached-policies.pb").is_file()


def test_fusebox_run_takes_its_identity_and_security_from_the_environment(
    server: ServerThread, pki: Pki, tmp_path: Path,
) -> None:
    env = child_env(**contract_env(server, pki, tmp_path, "checkout-sidecar-1"))
    sidecar = subprocess.Popen(
        [sys.executable, "-m", "fusebox.controlplane.cli", "run",
         "--dapr-http-port", str(free_port()), "--",
         sys.executable, "-c", "import time; time.sleep(60)"],
        cwd=REPOSITORY, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        session = session_of(server, "checkout-sidecar-1")
        assert (session.namespace, session.app_id) == ("shop", "checkout")
    finally:
        sidecar.terminate()  # forwarded to the app; the sidecar exits with its code
        output, _ = sidecar.communicate(timeout=DEADLINE)
    assert "refused this agent" not in output, output
