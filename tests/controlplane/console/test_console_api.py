"""The console's JSON API: the server's own RPCs, its own auth, errors that name the problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from fusebox.controlplane.console.gateway import CONSOLE_METHODS
from fusebox.controlplane.console.routes import SECURITY_HEADERS
from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.v1 import audit_pb2, audit_pb2_grpc, breaker_pb2
from tests.controlplane.console.conftest import (
    API,
    KEY,
    KEY_JSON,
    Console,
    bearer,
    console_server,
    grpc_metadata,
)
from tests.support.specs import REPOSITORY

FORCE_OPEN = {"key": KEY_JSON, "override": "BREAKER_OVERRIDE_FORCE_OPEN",
              "reason": "deploy of order-processor", "ttl": "600s"}

#: One valid request per served method (the breaker exists: forced open first).
REQUESTS: dict[str, dict[str, Any]] = {
    "fusebox.v1.SpecService/GetSpec": {"name": "myresiliency"},
    "fusebox.v1.SpecService/ListSpecs": {},
    "fusebox.v1.SpecService/ListSpecRevisions": {"name": "myresiliency"},
    "fusebox.v1.SpecService/ResolvePolicies": {"appId": "checkout"},
    "fusebox.v1.SpecService/RollbackSpec": {"name": "myresiliency", "toRevision": "1"},
    "fusebox.v1.BreakerService/ListBreakers": {},
    "fusebox.v1.BreakerService/GetBreaker": {"key": KEY_JSON},
    "fusebox.v1.BreakerService/SetOverride": FORCE_OPEN,
    "fusebox.v1.BreakerService/ResetBreaker": {"key": KEY_JSON, "reason": "false trip"},
    "fusebox.v1.AuditService/ListAuditEvents": {},
}


def test_every_served_method_has_a_request_here() -> None:
    assert set(REQUESTS) == CONSOLE_METHODS


@pytest.mark.parametrize("method", sorted(REQUESTS))
async def test_every_served_method_answers_an_admin(console: Console, method: str) -> None:
    assert (await console.call("fusebox.v1.BreakerService/SetOverride", FORCE_OPEN))[0] == 200
    status, answer = await console.call(method, REQUESTS[method])
    assert status == 200, answer
    assert isinstance(answer, dict)


async def test_answers_are_proto3_json_with_every_field(console: Console) -> None:
    status, answer = await console.call("fusebox.v1.BreakerService/SetOverride", FORCE_OPEN)
    assert status == 200
    breaker = answer["breaker"]
    assert breaker["state"] == "BREAKER_STATE_OPEN"  # enum names
    assert breaker["displayName"] == "order-processor:orders"  # camelCase
    assert breaker["override"]["override"] == "BREAKER_OVERRIDE_FORCE_OPEN"
    assert breaker["activeLeases"] == 0  # a field at its default is still there
    assert breaker["failingInstances"] == []


async def test_a_body_that_is_not_json_is_invalid_argument(console: Console) -> None:
    status, answer = await console.call("fusebox.v1.SpecService/ListSpecs", "{not json")
    assert status == 400 and answer["code"] == "invalid_argument"
    assert "request body" in answer["message"]


async def test_an_unknown_field_is_named(console: Console) -> None:
    status, answer = await console.call("fusebox.v1.BreakerService/GetBreaker",
                                        {"key": KEY_JSON, "colour": "red"})
    assert status == 400 and answer["code"] == "invalid_argument"
    assert '"colour"' in answer["message"]


async def test_a_field_of_the_wrong_type_is_named(console: Console) -> None:
    status, answer = await console.call("fusebox.v1.SpecService/GetSpec",
                                        {"name": "myresiliency", "revision": "latest"})
    assert status == 400 and "revision" in answer["message"]


@pytest.mark.parametrize("method", [
    "fusebox.v1.SpecService/ApplySpec",  # not served yet
    "fusebox.v1.SpecService/DeleteSpec",
    "fusebox.v1.AgentService/AcquireProbeLease",
    "fusebox.v1.NoSuchService/Nothing",
    "grpc.health.v1.Health/Check",
])
async def test_methods_outside_the_list_are_not_found(console: Console, method: str) -> None:
    status, answer = await console.call(method, {})
    assert status == 404 and answer["code"] == "not_found"
    assert method in answer["message"]


async def test_rpcs_want_post_with_json(console: Console) -> None:
    url = console.base + API + "fusebox.v1.SpecService/ListSpecs"
    async with console.http.post(url, data="{}", headers={**bearer("admin"),
                                                          "Content-Type": "text/plain"}) as reply:
        assert reply.status == 415
        assert (await reply.json())["code"] == "invalid_argument"
    async with console.http.get(url, headers=bearer("admin")) as reply:
        assert reply.status == 405 and reply.headers["Allow"] == "POST"


async def test_a_body_over_one_mebibyte_is_refused(console: Console) -> None:
    padding = "x" * (1024 * 1024)
    status, answer = await console.call("fusebox.v1.SpecService/ListSpecs",
                                        f'{{"namespace": "{padding}"}}')
    assert status == 413 and answer["code"] == "resource_exhausted"
    assert (await console.call("fusebox.v1.SpecService/ListSpecs", {}))[0] == 200  # still serving


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-token"},
                                     {"Authorization": "Basic dG9rOnRvaw=="}])
async def test_calls_without_a_valid_token_are_unauthenticated(
    console: Console, headers: dict[str, str],
) -> None:
    status, answer = await console.call("fusebox.v1.BreakerService/ListBreakers", {},
                                        role=None, **headers)
    assert status == 401 and answer["code"] == "unauthenticated"
    assert "token" in answer["message"]


async def test_a_viewer_cannot_override_and_the_breaker_stays_as_it_was(
    console: Console,
) -> None:
    await console.call("fusebox.v1.BreakerService/SetOverride", FORCE_OPEN, role="operator")
    before = await console.breakers().GetBreaker(breaker_pb2.GetBreakerRequest(key=KEY),
                                                 metadata=grpc_metadata("admin"))
    clear = {"key": KEY_JSON, "reason": "looks fine to me"}
    status, answer = await console.call("fusebox.v1.BreakerService/SetOverride", clear,
                                        role="viewer")
    assert status == 403 and answer["code"] == "permission_denied"
    assert "viewer" in answer["message"]
    after = await console.breakers().GetBreaker(breaker_pb2.GetBreakerRequest(key=KEY),
                                                metadata=grpc_metadata("admin"))
    assert after.breaker == before.breaker
    assert (await console.call("fusebox.v1.BreakerService/ListBreakers", {},
                               role="viewer"))[0] == 200


async def test_only_an_admin_rolls_back(console: Console) -> None:
    request = REQUESTS["fusebox.v1.SpecService/RollbackSpec"]
    status, answer = await console.call("fusebox.v1.SpecService/RollbackSpec", request,
                                        role="operator")
    assert status == 403 and answer["code"] == "permission_denied"
    assert (await console.call("fusebox.v1.SpecService/RollbackSpec", request))[0] == 200


async def test_errors_of_the_servicer_keep_their_code(console: Console) -> None:
    missing = {**KEY_JSON, "method": "refunds"}
    status, answer = await console.call("fusebox.v1.BreakerService/GetBreaker", {"key": missing})
    assert status == 404 and answer["code"] == "not_found"
    assert "order-processor:refunds" in answer["message"]
    status, answer = await console.call("fusebox.v1.BreakerService/SetOverride",
                                        {**FORCE_OPEN, "reason": " "})
    assert status == 400 and answer["message"].startswith("reason:")


async def test_an_override_through_the_console_is_audited_as_through_grpc(
    tmp_path: Path,
) -> None:
    """The same SetOverride on two servers with the same history, once from the page
    and once from a gRPC client: the audit records differ only in their time and id."""
    records = []
    for via_console, directory in ((True, tmp_path / "console"), (False, tmp_path / "grpc")):
        directory.mkdir()
        async with console_server(directory) as console:
            if via_console:
                status, _ = await console.call("fusebox.v1.BreakerService/SetOverride",
                                               FORCE_OPEN, role="operator")
                assert status == 200
            else:
                request = breaker_pb2.SetOverrideRequest(
                    key=KEY, override=breaker_pb2.BREAKER_OVERRIDE_FORCE_OPEN,
                    reason="deploy of order-processor")
                request.ttl.FromSeconds(600)
                await console.breakers().SetOverride(request,
                                                     metadata=grpc_metadata("operator"))
            events = (await audit_pb2_grpc.AuditServiceStub(console.channel).ListAuditEvents(
                audit_pb2.ListAuditEventsRequest(), metadata=grpc_metadata("admin"))).events
        newest = events[0]
        newest.ClearField("time")
        newest.id = ""
        records.append(newest)
    from_console, from_grpc = records
    assert from_console.action == audit_pb2.AUDIT_ACTION_BREAKER_OVERRIDE
    assert from_console.actor == "operator-person"
    assert from_console == from_grpc


async def test_session_says_who_the_bearer_is(console: Console) -> None:
    async with console.http.get(console.base + API + "session",
                                headers=bearer("viewer")) as reply:
        assert reply.status == 200
        assert await reply.json() == {"authRequired": True, "name": "viewer-person",
                                      "role": "viewer", "namespace": "default"}
    async with console.http.get(console.base + API + "session") as reply:
        assert reply.status == 401
        assert (await reply.json())["code"] == "unauthenticated"


async def test_without_a_tokens_file_the_session_needs_no_token() -> None:
    config = ServerConfig(listen="127.0.0.1:0", store_url="memory://",
                          http_listen="127.0.0.1:0", console=True)
    async with (FuseboxServer(config) as server, aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{server.http_port}{API}session") as reply):
        answer = await reply.json()
    assert reply.status == 200
    assert answer["authRequired"] is False and answer["role"] == ""
    assert answer["name"].startswith("ipv4:127.0.0.1:")


@pytest.mark.parametrize("path", ["/console/", "/console/api/session",
                                  "/console/api/fusebox.v1.Nope/Nope", "/console/static/nope.js"])
async def test_every_console_response_carries_the_security_headers(
    console: Console, path: str,
) -> None:
    async with console.http.get(console.base + path, headers=bearer("viewer")) as reply:
        for name, value in SECURITY_HEADERS.items():
            assert reply.headers[name] == value, name
        assert "Set-Cookie" not in reply.headers


async def test_the_page_and_its_assets_are_served_with_etags(console: Console) -> None:
    async with console.http.get(console.base + "/console/") as page:
        assert page.status == 200 and page.content_type == "text/html"
        etag = page.headers["ETag"]
        assert page.headers["Cache-Control"] == "no-cache"
    async with console.http.get(console.base + "/console/",
                                headers={"If-None-Match": etag}) as again:
        assert again.status == 304
    async with console.http.get(console.base + "/console/static/..%2Fgateway.py") as escape:
        assert escape.status == 404


async def test_the_root_and_bare_console_paths_lead_to_the_page(console: Console) -> None:
    for path in ("/", "/console"):
        async with console.http.get(console.base + path, allow_redirects=False) as reply:
            assert reply.status == 302 and reply.headers["Location"] == "/console/"


async def test_the_probes_and_metrics_are_unchanged_with_the_console(console: Console) -> None:
    async with console.http.get(console.base + "/healthz") as reply:
        assert (reply.status, await reply.text()) == (200, "ok\n")
        assert "Content-Security-Policy" not in reply.headers
    async with console.http.get(console.base + "/readyz") as reply:
        assert (reply.status, await reply.text()) == (200, "ready\n")
    async with console.http.get(console.base + "/metrics") as reply:
        assert reply.status == 200 and "fusebox_connected_agents" in await reply.text()
    async with console.http.get(console.base + "/elsewhere") as reply:
        assert reply.status == 404


async def test_without_the_flag_there_is_no_console() -> None:
    config = ServerConfig(listen="127.0.0.1:0", store_url="memory://",
                          http_listen="127.0.0.1:0")
    async with FuseboxServer(config) as server, aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{server.http_port}"
        for path in ("/", "/console", "/console/", "/console/api/session",
                     "/console/static/console.js"):
            async with http.get(base + path, allow_redirects=False) as reply:
                assert reply.status == 404, path
                assert "Content-Security-Policy" not in reply.headers


def test_without_the_flag_nothing_of_the_console_is_imported() -> None:
    script = (
        "import asyncio, sys\n"
        "from fusebox.controlplane.server import FuseboxServer, ServerConfig\n"
        "async def main():\n"
        "    config = ServerConfig(listen='127.0.0.1:0', store_url='memory://',\n"
        "                          http_listen='127.0.0.1:0')\n"
        "    async with FuseboxServer(config):\n"
        "        pass\n"
        "asyncio.run(main())\n"
        "print(sorted(m for m in sys.modules if m.startswith('fusebox.controlplane.console.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPOSITORY, capture_output=True,
                            text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
