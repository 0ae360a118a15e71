"""A real ``redis-server`` process for tests: 127.0.0.1, a free port, a private directory.

>>> server = RedisServer(tmp_path)
>>> server.start()          # returns once PING answers
>>> server.url              # 'redis://127.0.0.1:PORT/0'
>>> server.restart()        # same port, same dir: AOF replays what was written
>>> server.stop()

No redis-py here: the fixture speaks the few RESP commands it needs over a
socket, so it works for any test, sync or async.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["RedisServer", "free_port"]

_START_DEADLINE = 10.0
_STOP_DEADLINE = 10.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """One ``redis-server`` process; ``appendonly`` makes acknowledged writes survive
    ``stop()``/``kill()`` followed by ``start()``."""

    def __init__(
        self, directory: Path, *, port: int | None = None, appendonly: bool = True
    ) -> None:
        self.directory = Path(directory)
        self.port = port if port is not None else free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.appendonly = appendonly
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Starts the process and waits (with a deadline) until it answers PING."""
        if self.running:
            raise RuntimeError(f"redis-server on port {self.port} is already running")
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [
                executable,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.directory),
                "--appendonly", "yes" if self.appendonly else "no",
                "--save", "",  # no RDB snapshots: AOF (or nothing) only
                "--logfile", str(self.directory / "redis.log"),
                "--daemonize", "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _START_DEADLINE
        while True:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self._process.returncode}:\n{self._log_tail()}"
                )
            try:
                # Our process, not another one that got the same port first, and
                # done loading its AOF (INFO answers while loading; data commands don't).
                # "\nloading:", not "loading:": "async_loading:0" reads 0 while loading.
                if (f"process_id:{self._process.pid}\r" in self.command("INFO", "server")
                        and "\nloading:0\r" in self.command("INFO", "persistence")):
                    return
            except OSError:
                pass  # not listening yet, or still loading the AOF
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer PING in time:\n{self._log_tail()}")
            time.sleep(0.01)  # poll interval while waiting for the condition above

    def stop(self) -> None:
        """Graceful stop: SIGTERM runs the same shutdown as SHUTDOWN (AOF flushed and fsynced)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=_STOP_DEADLINE)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL: no shutdown work at all (writes already in the AOF file survive)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.kill()
        process.wait()

    def restart(self) -> None:
        """stop() then start() on the same port and directory."""
        self.stop()
        self.start()

    def flushall(self) -> None:
        if self.command("FLUSHALL") != "OK":
            raise RuntimeError(f"FLUSHALL failed on redis-server port {self.port}")

    def command(self, *arguments: str) -> str:
        """Sends one command; returns a simple, integer or bulk reply as text.

        Raises ConnectionError for an error reply (e.g. "-LOADING" while the
        AOF is replayed) and OSError when nothing listens.
        """
        request = f"*{len(arguments)}\r\n".encode()
        for argument in arguments:
            data = argument.encode()
            request += b"$%d\r\n%s\r\n" % (len(data), data)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5.0) as connection:
            connection.sendall(request)
            reply = b""
            while b"\r\n" not in reply or not _complete(reply):
                chunk = connection.recv(65536)
                if not chunk:
                    raise ConnectionError("redis-server closed the connection")
                reply += chunk
        header, _, body = reply.partition(b"\r\n")
        kind, value = header[:1], header[1:].decode()
        if kind == b"-":
            raise ConnectionError(value)
        if kind == b"$":
            return "" if value == "-1" else body[: int(value)].decode()
        if kind in (b"+", b":"):
            return value
        raise ValueError(f"unsupported reply type {kind!r} (arrays are not needed here)")

    def _log_tail(self) -> str:
        log = self.directory / "redis.log"
        return "\n".join(log.read_text().splitlines()[-20:]) if log.exists() else "(no log)"

    def __repr__(self) -> str:
        return f"RedisServer(port={self.port}, running={self.running})"


def _complete(reply: bytes) -> bool:
    """Whether a simple, error, integer or bulk reply has fully arrived."""
    header, _, body = reply.partition(b"\r\n")
    if header[:1] != b"$" or header == b"$-1":
        return True
    return len(body) >= int(header[1:]) + 2
