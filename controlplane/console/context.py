"""``ConsoleContext``: what a servicer sees of an RPC the console makes for a page.

The console calls the gRPC servicers in-process (``gateway.py``). They use
only a few methods of ``grpc.aio.ServicerContext`` — ``abort``,
``abort_with_status``, ``auth_context``, ``invocation_metadata``, ``peer``
and ``write`` — and this class provides exactly those:

* the HTTP ``Authorization`` header becomes the ``authorization`` metadata;
* ``peer`` names the HTTP client as gRPC would (``ipv4:127.0.0.1:51234``);
* ``auth_context`` is empty (the console's port has no client certificates);
* ``abort`` raises ``RpcAborted`` carrying the code and message, which the
  routes turn into the Connect protocol's error body;
* ``write`` hands a streamed message to the feed (``feed.py``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

import grpc
from aiohttp import web
from google.protobuf import any_pb2
from google.rpc import status_pb2

#: Where a streaming RPC's messages go (awaited: a full feed slows the writer down).
MessageSink = Callable[[Any], Awaitable[None]]

_STATUS_DETAILS_KEY = "grpc-status-details-bin"


class RpcAborted(Exception):
    """A servicer ended the RPC with an error status (``context.abort``)."""

    def __init__(self, code: grpc.StatusCode, details: str,
                 status_details: Sequence[any_pb2.Any] = ()) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        #: The rich error details (``google.rpc.Status.details``), e.g. spec violations.
        self.status_details = tuple(status_details)


def grpc_peer(host: str, port: int) -> str:
    """The peer string gRPC would give for an address (``ipv6:[::1]:5000``)."""
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        return f"unix:{host}"
    return f"ipv4:{host}:{port}" if version == 4 else f"ipv6:[{host}]:{port}"


def console_context(request: web.Request, sink: MessageSink | None = None) -> ConsoleContext:
    """The context of an RPC made for this HTTP request: its bearer, its client."""
    peername = request.transport.get_extra_info("peername") if request.transport else None
    host, port = (peername[0], peername[1]) if peername else (request.remote or "unknown", 0)
    return ConsoleContext(authorization=request.headers.get("Authorization", ""),
                          peer=grpc_peer(host, port), sink=sink)


class ConsoleContext:
    """Stands in for ``grpc.aio.ServicerContext`` in an in-process call."""

    def __init__(self, *, authorization: str, peer: str,
                 sink: MessageSink | None = None) -> None:
        self._metadata = (("authorization", authorization),) if authorization else ()
        self._peer = peer
        self._sink = sink

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def auth_context(self) -> dict[str, list[bytes]]:
        return {}

    async def abort(self, code: grpc.StatusCode, details: str = "",
                    trailing_metadata: Sequence[tuple[str, Any]] = ()) -> NoReturn:
        raise RpcAborted(code, details, _rich_details(trailing_metadata))

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        raise RpcAborted(status.code, status.details, _rich_details(status.trailing_metadata))

    async def write(self, message: Any) -> None:
        if self._sink is None:
            raise RuntimeError("write() in a unary call: only streaming RPCs write")
        await self._sink(message)


def _rich_details(trailing_metadata: Sequence[tuple[str, Any]] | None) -> list[any_pb2.Any]:
    for key, value in trailing_metadata or ():
        if key == _STATUS_DETAILS_KEY and isinstance(value, bytes):
            return list(status_pb2.Status.FromString(value).details)
    return []
