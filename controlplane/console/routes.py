"""The console's HTTP routes on the server's HTTP port (docs/console.md, "The HTTP API").

``ConsoleSite.mount`` adds them to the port's aiohttp application:

* ``/`` and ``/console`` redirect to ``/console/``, the page;
* ``/console/static/<file>``: its assets, from the package (no-cache + ETag);
* ``GET /console/api/session``: who the bearer is;
* ``POST /console/api/<package.Service>/<Method>``: one unary RPC (``gateway.py``);
* ``GET /console/api/fusebox.v1.BreakerService/WatchBreakers``: the live feed
  (``feed.py``).

Every console response carries the security headers below (a strict CSP:
the page runs only its own script, connects only to this origin, cannot be
framed). Credentials come only from the ``Authorization`` header, never a
cookie, so a page elsewhere cannot make a visitor's browser act here.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import mimetypes
import re
from importlib.resources.abc import Traversable

import grpc
from aiohttp import web
from google.protobuf import json_format

from fusebox.controlplane.console.connect_errors import NO_STORE, error_response
from fusebox.controlplane.console.context import RpcAborted, console_context
from fusebox.controlplane.console.feed import BreakerFeeds
from fusebox.controlplane.console.gateway import CONSOLE_METHODS, WATCH_METHOD, ConsoleGateway
from fusebox.controlplane.server.logs import log_event

log = logging.getLogger("fusebox.console")

#: Request bodies of the console's RPCs (a spec is far smaller; the gRPC limit is 4 MiB).
MAX_BODY_BYTES = 1024 * 1024

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

_API = "/console/api/"
_STATIC_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]*")  # no path, no hidden file
_CONTENT_TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
                  ".html": "text/html", ".svg": "image/svg+xml", ".json": "application/json"}


def static_root() -> Traversable:
    """The page's files, shipped as package data."""
    return importlib.resources.files("fusebox.controlplane.console") / "static"


class ConsoleSite:
    """The console on one HTTP port; ``mount`` it before the port opens, ``close`` to stop."""

    def __init__(self, gateway: ConsoleGateway, *, root: Traversable | None = None) -> None:
        self._gateway = gateway
        self._root = root if root is not None else static_root()
        self.feeds = BreakerFeeds(gateway)

    def mount(self, app: web.Application) -> None:
        app.on_response_prepare.append(_add_security_headers)
        app.router.add_get("/", _redirect_to_console)
        app.router.add_get("/console", _redirect_to_console)
        app.router.add_get("/console/", self._index)
        app.router.add_get("/console/static/{name}", self._static)
        app.router.add_get(_API + "session", self._session)
        app.router.add_get(_API + WATCH_METHOD, self._watch)
        app.router.add_route("*", _API + "{service}/{method}", self._unary)
        app.router.add_route("*", _API + "{tail:.*}", _api_not_found)

    async def close(self) -> None:
        await self.feeds.close()

    # ---- the page --------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.Response:
        return self._file(request, "index.html")

    async def _static(self, request: web.Request) -> web.Response:
        return self._file(request, request.match_info["name"])

    def _file(self, request: web.Request, name: str) -> web.Response:
        path = self._root / name
        if not _STATIC_NAME.fullmatch(name) or not path.is_file():
            return web.Response(status=404, text=f"not found: {name}\n", headers=NO_STORE)
        body = path.read_bytes()  # read each time: small files, and edits show at once
        etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
        headers = {"ETag": etag, "Cache-Control": "no-cache"}
        if etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        suffix = name[name.rfind("."):] if "." in name else ""
        content_type = _CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0]
        return web.Response(body=body, headers=headers,
                            content_type=content_type or "application/octet-stream",
                            charset="utf-8" if suffix in _CONTENT_TYPES else None)

    # ---- the API ---------------------------------------------------------------------

    async def _session(self, request: web.Request) -> web.Response:
        try:
            identity = await self._gateway.identify(console_context(request))
        except RpcAborted as e:
            return error_response(e.code, e.details)
        return web.json_response({
            "authRequired": identity.role is not None,
            "name": identity.name,
            "role": identity.role.value if identity.role is not None else "",
            "namespace": identity.namespace,
        }, headers=NO_STORE)

    async def _watch(self, request: web.Request) -> web.StreamResponse:
        return await self.feeds.serve(request)

    async def _unary(self, request: web.Request) -> web.Response:
        method = f"{request.match_info['service']}/{request.match_info['method']}"
        if method not in CONSOLE_METHODS:
            return _not_served(method)
        if request.method != "POST":
            return error_response(grpc.StatusCode.UNIMPLEMENTED,
                                  f"{request.method} {request.path}: RPCs are called with POST",
                                  status=405, headers={"Allow": "POST"})
        if request.content_type != "application/json":
            return error_response(grpc.StatusCode.INVALID_ARGUMENT,
                                  f"Content-Type {request.content_type or '(none)'!r}: "
                                  "send the request as application/json", status=415)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _too_large()
        if len(body) > MAX_BODY_BYTES:
            return _too_large()
        message = self._gateway.request_type(method)()
        try:
            json_format.Parse(body or b"{}", message, ignore_unknown_fields=False)
        except json_format.ParseError as e:
            return error_response(grpc.StatusCode.INVALID_ARGUMENT, _parse_problem(e))
        try:
            reply = await self._gateway.call(method, message, console_context(request))
        except RpcAborted as e:
            return error_response(e.code, e.details, e.status_details)
        except Exception as e:  # a servicer bug: the page gets an error, the server goes on
            log_event(log, logging.ERROR, "console call failed", method=method, error=repr(e))
            return error_response(grpc.StatusCode.UNKNOWN, f"internal error: {e}")
        return web.json_response(
            json_format.MessageToDict(reply, always_print_fields_with_no_presence=True),
            headers=NO_STORE, dumps=_dumps,
        )


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _parse_problem(error: json_format.ParseError) -> str:
    # protobuf names the field: 'Message type "fusebox.v1.X" has no field named "y" at "X".'
    # followed by every field it has; the first line is the point.
    return f"request body: {str(error).splitlines()[0].strip()}"


def _too_large() -> web.Response:
    return error_response(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"request body over {MAX_BODY_BYTES} bytes", status=413)


def _not_served(method: str) -> web.Response:
    return error_response(grpc.StatusCode.NOT_FOUND,
                          f"{method}: not served by the console (see docs/console.md for the "
                          "methods it serves)")


async def _api_not_found(request: web.Request) -> web.Response:
    return _not_served(request.path.removeprefix(_API))


async def _redirect_to_console(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")


async def _add_security_headers(request: web.Request, response: web.StreamResponse) -> None:
    if request.path == "/" or request.path.startswith("/console"):
        response.headers.update(SECURITY_HEADERS)
        response.headers.setdefault("Cache-Control", "no-store")
