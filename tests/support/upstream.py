"""A scriptable HTTP upstream on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Upstream:
    """Answers every GET/POST with 200 (healthy) or 500 (failing); counts hits."""

    def __init__(self) -> None:
        self.failing = False
        self.hits: list[tuple[float, bool]] = []  # (time, answered with failure)
        self._lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                failing = upstream.failing
                with upstream._lock:
                    upstream.hits.append((time.time(), failing))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                body = b'{"error": "failing"}' if failing else b'{"ok": true}'
                self.send_response(500 if failing else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def failing_hits(self, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for t, failed in self.hits if failed and t >= since)

    def __enter__(self) -> Upstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
