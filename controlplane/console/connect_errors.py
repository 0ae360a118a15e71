"""gRPC status codes as the Connect protocol's JSON errors (docs/console.md).

A page (or a script) gets ``{"code": "<code>", "message": "...", "details": [...]}``
with the HTTP status Connect assigns to the code, so a failed call reads the
same whatever client made it. ``details`` carries the rich error details a
servicer attached (the spec violations of a refused rollback, say), each as
Connect does: ``type``, base64 ``value`` and a readable ``debug`` form.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import grpc
from aiohttp import web
from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory

#: Connect's HTTP status per code (anything not listed: 500).
_HTTP_STATUS = {
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    # Connect would say 412; the console keeps 400 so that a proxy never treats
    # it as an HTTP precondition (no If-Match is involved).
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

NO_STORE = {"Cache-Control": "no-store"}


def connect_code(code: grpc.StatusCode) -> str:
    """The code's Connect name: gRPC's in snake case (``CANCELLED`` is ``canceled``)."""
    return "canceled" if code is grpc.StatusCode.CANCELLED else code.name.lower()


def http_status(code: grpc.StatusCode) -> int:
    return _HTTP_STATUS.get(code, 500)


def error_body(code: grpc.StatusCode, message: str,
               details: Sequence[any_pb2.Any] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {"code": connect_code(code), "message": message}
    if details:
        body["details"] = [_detail(d) for d in details]
    return body


def error_response(code: grpc.StatusCode, message: str, details: Sequence[any_pb2.Any] = (),
                   *, status: int | None = None,
                   headers: dict[str, str] | None = None) -> web.Response:
    """The error as an HTTP response (``status`` overrides the code's, e.g. 413, 415)."""
    return web.json_response(error_body(code, message, details),
                             status=status or http_status(code),
                             headers={**NO_STORE, **(headers or {})})


def _detail(detail: any_pb2.Any) -> dict[str, Any]:
    type_name = detail.TypeName()
    shown: dict[str, Any] = {
        "type": type_name,
        "value": base64.b64encode(detail.value).decode().rstrip("="),
    }
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(type_name)
    except KeyError:
        return shown  # a type this process does not know: the bytes only
    message = message_factory.GetMessageClass(descriptor)()
    if detail.Unpack(message):
        shown["debug"] = json_format.MessageToDict(message)
    return shown
