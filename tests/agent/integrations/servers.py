"""Real servers on 127.0.0.1 whose replies each test scripts: HTTP and gRPC."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc

# A blocked handler gives up after this long, so a broken test cannot hang the suite.
BLOCK_LIMIT_SECONDS = 30.0


def wait_for(condition: Callable[[], bool], deadline_seconds: float = 10.0) -> None:
    """Wait until ``condition()`` holds; fail after the deadline. Polls, never sleeps long."""
    deadline = time.monotonic() + deadline_seconds
    while not condition():
        if time.monotonic() > deadline:
            threads = sorted(t.name for t in threading.enumerate())
            raise AssertionError(f"condition not met within {deadline_seconds}s; "
                                 f"threads: {threads}")
        time.sleep(0.01)


def closed_port_url() -> str:
    """A loopback URL where nothing listens: connections are refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def fusebox_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("fusebox-timeout")]


# -- HTTP -------------------------------------------------------------------------------


@dataclass
class Reply:
    """One scripted HTTP reply; ``block`` holds it until the test releases the server."""

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    block: bool = False


@dataclass
class Hit:
    method: str
    path: str
    body: bytes


class ScriptedHTTPServer:
    """A ``ThreadingHTTPServer`` that plays ``replies`` in order (the last one repeats)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = [Reply()]
        self.hits: list[Hit] = []
        self.release = threading.Event()
        self.blocked = 0  # handlers waiting on `release` right now
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        # A short poll interval makes shutdown() (each test's teardown) quick.
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, *replies: Reply | int) -> None:
        self.replies = [r if isinstance(r, Reply) else Reply(r, body=str(r).encode())
                        for r in replies]

    def start(self) -> ScriptedHTTPServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _next(self, hit: Hit) -> Reply:
        with self._lock:
            reply = self.replies[min(len(self.hits), len(self.replies) - 1)]
            self.hits.append(hit)
            return reply

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip(), 16)
                        chunk = self.rfile.read(size)
                        self.rfile.readline()
                        if size == 0:
                            return b"".join(chunks)
                        chunks.append(chunk)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _serve(self) -> None:
                reply = server._next(Hit(self.command, self.path, self._read_body()))
                if reply.block:
                    with server._lock:
                        server.blocked += 1
                    server.release.wait(BLOCK_LIMIT_SECONDS)
                    with server._lock:
                        server.blocked -= 1
                with contextlib.suppress(OSError):  # the client may have given up waiting
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_DELETE = _serve

        return Handler


# -- gRPC -------------------------------------------------------------------------------

SERVICE = "test.Echo"
UNARY = f"/{SERVICE}/Unary"
SERVER_STREAM = f"/{SERVICE}/ServerStream"
CLIENT_STREAM = f"/{SERVICE}/ClientStream"
BIDI = f"/{SERVICE}/Bidi"

SLOW = "slow"  # a scripted step: block until released, then answer OK
MID_STREAM_FAILURE = "mid"  # a scripted step for streams: one message, then UNAVAILABLE


class ScriptedGrpcServer:
    """A real ``grpc.server`` with a bytes-in, bytes-out service whose outcomes are scripted.

    ``script(method, 14, 0)`` makes the next calls of ``method`` fail with code 14
    then succeed (the last step repeats). Responses echo the request bytes;
    streams answer ``b"a"``, ``b"b"``, ``b"c"``.
    """

    def __init__(self) -> None:
        self.steps: dict[str, list[int | str]] = {}
        self.hits: dict[str, int] = {}
        self.received: list[bytes] = []
        self.release = threading.Event()
        self.blocked = 0  # handlers waiting on `release` right now
        self._lock = threading.Lock()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        handlers = {
            "Unary": grpc.unary_unary_rpc_method_handler(self._unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self._server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self._client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(self._bidi),
        }
        self._server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, handlers),)
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"

    def start(self) -> ScriptedGrpcServer:
        self._server.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.stop(None).wait()

    def script(self, method: str, *steps: int | str) -> None:
        self.steps[method] = list(steps)

    def _step(self, method: str, context: grpc.ServicerContext) -> int | str:
        with self._lock:
            steps = self.steps.get(method, [0])
            count = self.hits.get(method, 0)
            self.hits[method] = count + 1
            step = steps[min(count, len(steps) - 1)]
        if step == SLOW:
            with self._lock:
                self.blocked += 1
            self.release.wait(BLOCK_LIMIT_SECONDS)
            with self._lock:
                self.blocked -= 1
            return 0
        if isinstance(step, int) and step != 0:
            context.abort(status_code(step), f"scripted {step}")
        return step

    def _unary(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._step(UNARY, context)
        return request

    def _server_stream(self, request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        step = self._step(SERVER_STREAM, context)
        yield b"a"
        if step == MID_STREAM_FAILURE:
            context.abort(grpc.StatusCode.UNAVAILABLE, "mid-stream")
        yield b"b"
        yield b"c"

    def _client_stream(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        received = b"".join(requests)
        with self._lock:
            self.received.append(received)
        self._step(CLIENT_STREAM, context)
        return received

    def _bidi(self, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        self._step(BIDI, context)
        for request in requests:
            yield request.upper()


def status_code(code: int) -> grpc.StatusCode:
    return next(status for status in grpc.StatusCode if status.value[0] == code)
