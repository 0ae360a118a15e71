"""A real server with ``--console`` on loopback, tokens for every role, and HTTP helpers.

The server runs in-process on the test's event loop (embedded stores); the
tests talk to it over real HTTP (aiohttp's client) and real gRPC, as the page
and the CLI would.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest

from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.controlplane.server.security.tokens import Role, TokenEntry, entry_yaml, hash_token
from fusebox.v1 import breaker_pb2_grpc, policy_pb2, spec_pb2, spec_pb2_grpc
from tests.support.specs import SEED_SPEC

API = "/console/api/"
TOKENS = {"admin": "tok-console-admin", "operator": "tok-console-operator",
          "viewer": "tok-console-viewer"}
#: The seed spec's breaker (checkout's calls to order-processor's "orders" method).
KEY_JSON = {"namespace": "default", "spec": "myresiliency", "kind": "TARGET_KIND_APP",
            "target": "order-processor", "method": "orders"}
KEY = policy_pb2.BreakerKey(namespace="default", spec="myresiliency",
                            kind=policy_pb2.TARGET_KIND_APP, target="order-processor",
                            method="orders")


def bearer(role: str | None) -> dict[str, str]:
    return {} if role is None else {"Authorization": f"Bearer {TOKENS[role]}"}


def grpc_metadata(role: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKENS[role]}"),)


@dataclass
class Console:
    """The server under test, its HTTP base URL, an HTTP session and a gRPC channel."""

    server: FuseboxServer
    base: str
    http: aiohttp.ClientSession
    channel: grpc.aio.Channel

    async def call(self, method: str, body: Any, role: str | None = "admin",
                   **headers: str) -> tuple[int, dict[str, Any]]:
        """POST one RPC as JSON; the status and the decoded JSON answer."""
        data = body if isinstance(body, str | bytes) else json.dumps(body)
        sent = {"Content-Type": "application/json", **bearer(role), **headers}
        async with self.http.post(self.base + API + method, data=data, headers=sent) as reply:
            return reply.status, await reply.json(content_type=None)

    def breakers(self) -> breaker_pb2_grpc.BreakerServiceStub:
        return breaker_pb2_grpc.BreakerServiceStub(self.channel)


def tokens_file(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "tokens.yaml"
    entries = [entry_yaml(TokenEntry(f"{role}-person", hash_token(token), Role(role)))
               for role, token in TOKENS.items()]
    path.write_text("tokens:\n" + "\n".join(entries) + "\n")
    return path


@pytest.fixture
async def console(tmp_path: Path) -> AsyncIterator[Console]:
    async with console_server(tmp_path) as running:
        yield running


@contextlib.asynccontextmanager
async def console_server(tmp_path: Path, store_url: str = "memory://"
                         ) -> AsyncIterator[Console]:
    """A server with the console and the seed spec applied (each one fresh)."""
    config = ServerConfig(listen="127.0.0.1:0", store_url=store_url, data_dir=tmp_path,
                          http_listen="127.0.0.1:0", console=True,
                          tokens_file=tokens_file(tmp_path))
    async with FuseboxServer(config) as server:
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")
        await spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
            spec_pb2.ApplySpecRequest(yaml=SEED_SPEC), metadata=grpc_metadata("admin"))
        async with aiohttp.ClientSession() as http:
            yield Console(server, f"http://127.0.0.1:{server.http_port}", http, channel)
        await channel.close()
