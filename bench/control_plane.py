"""A real control plane for the benchmark, in a background thread, behind a counting proxy.

The server (``FuseboxServer`` on ``memory://``) and the ``CountingProxy`` share
one event loop in a daemon thread. Agents connect to the proxy's address;
specs are applied to the server directly, so the proxy sees agent traffic only.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError

from bench.wire_count import CountingProxy, WireCount
from fusebox.controlplane.server import FuseboxServer, ServerConfig
from fusebox.v1 import agent_pb2, spec_pb2, spec_pb2_grpc

T = TypeVar("T")
START_DEADLINE = 30.0


def describe_agent_message(payload: bytes) -> dict[str, int]:
    """An agent -> server message on the Connect stream: its kind, and the outcomes it reports."""
    try:
        request = agent_pb2.ConnectRequest.FromString(payload)
    except DecodeError:
        return {"undecodable": 1}
    kind = request.WhichOneof("message") or "empty"
    counts = {kind: 1}
    if kind == "report":
        counts["outcomes"] = sum(abs(run) for b in request.report.breakers for run in b.runs)
    return counts


def describe_server_message(payload: bytes) -> dict[str, int]:
    """A server -> agent message on the Connect stream: its kind."""
    try:
        response = agent_pb2.ConnectResponse.FromString(payload)
    except DecodeError:
        return {"undecodable": 1}
    return {response.WhichOneof("message") or "empty": 1}


class BackgroundControlPlane:
    """``with BackgroundControlPlane() as cp``: ``cp.agent_address`` goes through the proxy."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="bench-control-plane", daemon=True)
        self._server: FuseboxServer | None = None
        self._proxy: CountingProxy | None = None
        self.late_grpc_events = 0  # see _drop_events_for_closed_loops
        self._loop.set_exception_handler(self._drop_events_for_closed_loops)

    def _drop_events_for_closed_loops(self, loop: asyncio.AbstractEventLoop,
                                      context: dict[str, Any]) -> None:
        """Count, instead of printing, grpc.aio events addressed to an already closed loop.

        grpc.aio binds every event loop that uses it to one completion queue;
        whichever loop wakes up forwards each event to the loop owning the
        call. When the sync agent's link closes its private loop, events for
        its cancelled stream can still arrive, and forwarding them fails with
        "Event loop is closed" here (a known grpc.aio multi-loop limitation).
        Nothing is lost; anything else goes to the default handler.
        """
        error = context.get("exception")
        if isinstance(error, RuntimeError) and str(error) == "Event loop is closed" and (
            "PollerCompletionQueue" in repr(context.get("handle"))
        ):
            self.late_grpc_events += 1
            return
        loop.default_exception_handler(context)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float = START_DEADLINE) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> BackgroundControlPlane:
        self._thread.start()
        self._run(self._start())
        return self

    async def _start(self) -> None:
        self._server = FuseboxServer(ServerConfig(listen="127.0.0.1:0", store_url="memory://"))
        await self._server.start()
        self._proxy = CountingProxy(self._server.port, describe_sent=describe_agent_message,
                                    describe_received=describe_server_message)
        await self._proxy.start()

    @property
    def server_address(self) -> str:
        assert self._server is not None
        return f"127.0.0.1:{self._server.port}"

    @property
    def agent_address(self) -> str:
        """Where agents connect: the counting proxy in front of the server."""
        assert self._proxy is not None
        return f"127.0.0.1:{self._proxy.port}"

    def apply_spec(self, yaml_text: str) -> None:
        """ApplySpec over gRPC, straight to the server (not counted as agent traffic)."""
        with grpc.insecure_channel(self.server_address) as channel:
            spec_pb2_grpc.SpecServiceStub(channel).ApplySpec(
                spec_pb2.ApplySpecRequest(yaml=yaml_text, source_name="bench"),
                timeout=START_DEADLINE,
            )

    def agent_traffic(self) -> tuple[WireCount, WireCount]:
        """(agent → server, server → agent) as counted by the proxy so far."""
        assert self._proxy is not None
        return self._run(self._proxy.totals())

    def stop(self) -> None:
        async def _stop() -> None:
            if self._proxy is not None:
                await self._proxy.stop()
            if self._server is not None:
                await self._server.stop()

        try:
            self._run(_stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> BackgroundControlPlane:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
