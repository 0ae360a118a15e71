"""The world the console's browser tests look at: a real `fusebox serve --console` with
a tokens file (viewer, operator, admin and an agent token), a failing upstream and
agent processes calling it through a cluster breaker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc

from fusebox.controlplane.server.security.tokens import Role, TokenEntry, entry_yaml, hash_token
from fusebox.v1 import breaker_pb2, breaker_pb2_grpc, policy_pb2, spec_pb2, spec_pb2_grpc
from tests.support.processes import AgentProcess, ServerProcess
from tests.support.redis_server import free_port

#: role -> (token name, token)
TOKENS: dict[str, tuple[str, str]] = {
    "admin": ("alice-admin", "tok-console-admin-4f1d"),
    "operator": ("oscar-operator", "tok-console-operator-a83c"),
    "viewer": ("vera-viewer", "tok-console-viewer-19be"),
    "agent": ("checkout-agents", "tok-console-agent-7d22"),
}

APP = "checkout"
TARGET = "upstream"
METHOD = "work"
BREAKER = f"{TARGET}:{METHOD}"


def token(role: str) -> str:
    return TOKENS[role][1]


def tokens_yaml() -> str:
    lines = ["tokens:"]
    for role, (name, secret) in TOKENS.items():
        apps = frozenset({APP}) if role == "agent" else frozenset()
        lines.append(entry_yaml(TokenEntry(name, hash_token(secret), Role(role), apps)))
    return "\n".join(lines) + "\n"


def spec_yaml(name: str, *, threshold: int = 3, timeout: str = "4s",
              targets: tuple[str, ...] = (TARGET,), max_requests: int = 1) -> str:
    """A spec guarding each of ``targets`` (apps) with one shared breaker policy."""
    apps = "".join(f"      {json.dumps(t, ensure_ascii=False)}:\n        circuitBreaker: shared\n"
                   for t in targets)
    return f"""\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: {json.dumps(name, ensure_ascii=False)}
scopes: [{APP}]
spec:
  policies:
    circuitBreakers:
      shared:
        maxRequests: {max_requests}
        timeout: {timeout}
        trip: consecutiveFailures >= {threshold}
  targets:
    apps:
{apps}"""


class ConsoleServer:
    """A server process with the console on its HTTP port; restartable on the same ports."""

    def __init__(self, workdir: Path, *, store_url: str | None = None) -> None:
        self.tokens_file = workdir / "tokens.yaml"
        self.tokens_file.write_text(tokens_yaml())
        self.http_port = free_port()
        self.process = ServerProcess(workdir, store_url=store_url, extra_args=(
            "--console", "--http-listen", f"127.0.0.1:{self.http_port}",
            "--tokens-file", str(self.tokens_file),
        ))
        self.address = self.process.address
        self.url = f"http://127.0.0.1:{self.http_port}"

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.process.stop()

    def log(self) -> str:
        return self.process.log.read_text() if self.process.log.exists() else ""

    # ---- the gRPC API, as a given role --------------------------------------------------

    @contextmanager
    def channel(self) -> Iterator[grpc.Channel]:
        with grpc.insecure_channel(self.address) as channel:
            yield channel

    @staticmethod
    def metadata(role: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {token(role)}"),)

    def apply(self, yaml: str) -> spec_pb2.ApplySpecResponse:
        with self.channel() as channel:
            reply: spec_pb2.ApplySpecResponse = spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
                spec_pb2.ApplySpecRequest(yaml=yaml), metadata=self.metadata("admin"), timeout=10)
            return reply

    def breakers(self) -> list[breaker_pb2.Breaker]:
        with self.channel() as channel:
            reply = breaker_pb2_grpc.BreakerServiceStub(channel).ListBreakers(
                breaker_pb2.ListBreakersRequest(), metadata=self.metadata("viewer"), timeout=10)
            return list(reply.breakers)

    def breaker(self, key: policy_pb2.BreakerKey) -> breaker_pb2.Breaker:
        with self.channel() as channel:
            reply = breaker_pb2_grpc.BreakerServiceStub(channel).GetBreaker(
                breaker_pb2.GetBreakerRequest(key=key), metadata=self.metadata("viewer"),
                timeout=10)
            breaker: breaker_pb2.Breaker = reply.breaker
            return breaker

    def set_override(self, key: policy_pb2.BreakerKey, override: int, reason: str = "",
                     ttl_seconds: int = 0) -> breaker_pb2.Breaker:
        request = breaker_pb2.SetOverrideRequest(key=key, override=override, reason=reason)  # type: ignore[arg-type]
        if ttl_seconds:
            request.ttl.seconds = ttl_seconds
        with self.channel() as channel:
            reply = breaker_pb2_grpc.BreakerServiceStub(channel).SetOverride(
                request, metadata=self.metadata("operator"), timeout=10)
            breaker: breaker_pb2.Breaker = reply.breaker
            return breaker


def app_key(spec: str, target: str = TARGET, method: str = METHOD,
            namespace: str = "default") -> policy_pb2.BreakerKey:
    return policy_pb2.BreakerKey(namespace=namespace, spec=spec, kind=policy_pb2.TARGET_KIND_APP,
                                 target=target, method=method)


def start_agent(workdir: Path, server: ConsoleServer, name: str, upstream_url: str,
                *extra: str) -> AgentProcess:
    """An agent process calling ``upstream_url`` every 50 ms with the agent token."""
    return AgentProcess(workdir, name, server.address, upstream_url, "--token", token("agent"),
                        "--interval", "0.05", "--log-calls", *extra)


def wait_ready(agent: AgentProcess) -> None:
    agent.wait_for(lambda events: any(e["event"] == "ready" for e in events), 30,
                   "the agent's first policies")


def calls(agent: AgentProcess) -> list[Any]:
    return [e["result"] for e in list(agent.events) if e["event"] == "call"]
