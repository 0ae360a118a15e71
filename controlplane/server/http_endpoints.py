"""The server's HTTP port (`--http-listen`): /metrics, /healthz, /readyz (and the console).

* ``/metrics``: the replica's Prometheus registry, as prometheus_client's own
  handlers serve it (content negotiation, gzip when accepted, ``name[]`` filters);
* ``/healthz``: liveness, 200 while the process serves (its event loop turns);
* ``/readyz``: readiness, 200 when the stores answer and the gRPC server is
  serving, else 503 with the reason as a short text body;
* with ``--console``, ``/console/...`` (``fusebox.controlplane.console``) and a
  redirect from ``/`` to it;
* anything else: 404.

Served by aiohttp on the server's own event loop. One HTTP stack for
everything: the console's live feed streams breaker transitions from the same
loop that produces them, which a server in a thread of its own could only do
through a queue between loops. A stuck event loop now fails the liveness probe
by not answering it, which is what a liveness probe is for; /healthz still
reports a loop that turns too rarely to keep its heartbeat. The probes read
plain attributes the event loop keeps current; they never touch the stores.
"""

from __future__ import annotations

import gzip
import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

#: None when fine, else why not (the body of a 503).
Probe = Callable[[], str | None]
#: Adds routes (and middlewares) to the port's application before it starts.
Mount = Callable[[web.Application], None]

_NOT_FOUND = "not found: this port serves /metrics, /healthz and /readyz"
_NO_STORE = {"Cache-Control": "no-store"}
_PROBE_METHODS = ("GET", "HEAD")
_MAX_BODY_BYTES = 1024 * 1024  # nothing on this port takes more (the console's RPCs)

# aiohttp logs every request at INFO: probes every few seconds would flood the log.
logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def split_listen(listen: str, flag: str = "--http-listen") -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (loopback) as (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{flag} {listen!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


def text_response(status: int, text: str, *, head: bool = False,
                  headers: dict[str, str] | None = None) -> web.Response:
    """A short plain-text answer that no cache keeps."""
    response = web.Response(status=status, text=text, content_type="text/plain",
                            charset="utf-8", headers={**_NO_STORE, **(headers or {})})
    if head:
        # HEAD: the length of the body GET would send, and no body.
        response.body = b""
        response.headers["Content-Length"] = str(len(text.encode()))
    return response


class HttpEndpoints:
    """The HTTP port of one server replica; ``await start(listen)``, ``await stop()``.

    ``mounts`` add routes before the port opens (the console's, when enabled).
    """

    def __init__(self, registry: CollectorRegistry, *, alive: Probe, ready: Probe) -> None:
        self._registry = registry
        self._alive, self._ready = alive, ready
        self._not_found = f"{_NOT_FOUND}\n"
        self._runner: web.AppRunner | None = None

    def application(self, mounts: tuple[Mount, ...] = ()) -> web.Application:
        """The aiohttp application, with the routes ``mounts`` add (tried before the 404)."""
        app = web.Application(client_max_size=_MAX_BODY_BYTES)
        app.router.add_route("*", "/metrics", self._metrics)
        app.router.add_route("*", "/healthz", self._healthz)
        app.router.add_route("*", "/readyz", self._readyz)
        for mount in mounts:
            mount(app)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        names = request.query.getall("name[]", [])
        body = encoder(self._registry.restricted_registry(names) if names else self._registry)
        headers = {"Content-Type": content_type}
        if gzip_accepted(request.headers.get("Accept-Encoding", "")):
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return web.Response(body=body, headers=headers)

    async def _healthz(self, request: web.Request) -> web.Response:
        return self._probe(request, self._alive(), "ok")

    async def _readyz(self, request: web.Request) -> web.Response:
        return self._probe(request, self._ready(), "ready")

    @staticmethod
    def _probe(request: web.Request, problem: str | None, fine: str) -> web.Response:
        if request.method not in _PROBE_METHODS:
            return text_response(405, f"method {request.method} not allowed: use GET or HEAD\n",
                                 headers={"Allow": ", ".join(_PROBE_METHODS)})
        head = request.method == "HEAD"
        if problem is None:
            return text_response(200, f"{fine}\n", head=head)
        return text_response(503, f"{problem}\n", head=head)

    async def _unknown(self, request: web.Request) -> web.Response:
        return text_response(404, self._not_found)

    async def start(self, listen: str, *, mounts: tuple[Mount, ...] = (),
                    not_found_hint: str = "") -> int:
        """Listen on ``listen`` (host:port) on the running loop; the bound port."""
        host, port = split_listen(listen)
        self._not_found = f"{_NOT_FOUND}{not_found_hint}\n"
        # Handler cancellation: a client that goes away ends its handler, so a
        # console feed stops watching as soon as its page is closed.
        runner = web.AppRunner(self.application(mounts), access_log=None, handle_signals=False,
                               shutdown_timeout=1.0, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as e:
            await runner.cleanup()
            raise OSError(f"cannot listen on {listen} (HTTP): {e.strerror or e}") from e
        self._runner = runner
        bound: int = runner.addresses[0][1]  # port 0 asks the system for one
        return bound

    async def stop(self) -> None:
        """Close the port; streams still open (the console's feed) are ended."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
