"""The server's HTTP port (`--metrics-listen`): /metrics, /healthz, /readyz.

* ``/metrics``: the replica's Prometheus registry (prometheus_client's WSGI
  app: content negotiation, gzip, ``name[]`` filters);
* ``/healthz``: liveness, 200 while the process serves (its event loop turns);
* ``/readyz``: readiness, 200 when the stores answer and the gRPC server is
  serving, else 503 with the reason as a short text body;
* anything else: 404.

Served by the standard library's ``wsgiref`` in a thread of its own, as
prometheus_client's ``start_http_server`` does, so a busy or stuck event loop
cannot delay a probe, and the server extra needs no HTTP framework
(aiohttp stays in the sidecar extra). The probes read plain attributes the
event loop keeps current; they never touch the stores themselves.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import CollectorRegistry, make_wsgi_app

#: None when fine, else why not (the body of a 503).
Probe = Callable[[], str | None]
StartResponse = Callable[..., Any]

_TEXT = (("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store"))


def _text(start_response: StartResponse, status: str, text: str, *extra: tuple[str, str],
          head: bool = False) -> list[bytes]:
    body = text.encode()
    # A fresh header list each time: wsgiref adds to the list it is given.
    start_response(status, [*_TEXT, *extra, ("Content-Length", str(len(body)))])
    return [] if head else [body]


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # requests in flight never hold the process at exit


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the server's log."""


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or ``:port`` (loopback) as (host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"--metrics-listen {listen!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


class HttpEndpoints:
    """The HTTP port of one server replica; ``start`` it, ``stop`` it (blocking)."""

    def __init__(self, registry: CollectorRegistry, *, alive: Probe, ready: Probe) -> None:
        self._metrics = make_wsgi_app(registry)
        self._alive, self._ready = alive, ready
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    def app(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        """The WSGI application (also usable on its own, e.g. in tests)."""
        path = environ.get("PATH_INFO", "")
        if path == "/metrics":
            body: Iterable[bytes] = self._metrics(environ, start_response)
            return body
        if path == "/healthz":
            return self._probe(environ, start_response, self._alive(), "ok")
        if path == "/readyz":
            return self._probe(environ, start_response, self._ready(), "ready")
        return _text(start_response, "404 Not Found",
                     "not found: this port serves /metrics, /healthz and /readyz\n")

    @staticmethod
    def _probe(environ: dict[str, Any], start_response: StartResponse, problem: str | None,
               fine: str) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _text(start_response, "405 Method Not Allowed",
                         f"method {method} not allowed: use GET or HEAD\n", ("Allow", "GET, HEAD"))
        if problem is None:
            return _text(start_response, "200 OK", f"{fine}\n", head=method == "HEAD")
        return _text(start_response, "503 Service Unavailable", f"{problem}\n",
                     head=method == "HEAD")

    def start(self, listen: str) -> int:
        """Listen on ``listen`` (host:port) and serve in a thread; the bound port."""
        host, port = split_listen(listen)
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                    flags=socket.AI_PASSIVE)[0][0]
        server_class = type("_Server", (_ThreadingServer,), {"address_family": family})
        server: WSGIServer = server_class((host, port), _QuietHandler)
        server.set_app(self.app)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="fusebox-http", daemon=True)
        self._thread.start()
        bound: int = server.server_port
        return bound

    def stop(self) -> None:
        """Stop serving and close the port (blocks up to the poll interval)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
