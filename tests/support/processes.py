"""Real `fusebox serve` processes for end-to-end tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.support.redis_server import free_port
from tests.support.specs import REPOSITORY

START_DEADLINE_SECONDS = 60.0

_FAST_RECONNECT = [
    ("grpc.initial_reconnect_backoff_ms", 50),
    ("grpc.min_reconnect_backoff_ms", 50),
    ("grpc.max_reconnect_backoff_ms", 250),
]


def child_env(**extra: str) -> dict[str, str]:
    """The test's environment, minus FUSEBOX_SERVER, with the repository importable."""
    env = {k: v for k, v in os.environ.items() if k != "FUSEBOX_SERVER"}
    env["PYTHONPATH"] = str(REPOSITORY)
    env.update(extra)
    return env


def health_status(address: str, timeout: float = 2.0) -> int | None:
    """The server's overall health status, or None when it does not answer."""
    with grpc.insecure_channel(address) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError:
            return None
    status: int = reply.status
    return status


def wait_for_health(
    address: str, wanted: int, *, deadline: float, process: subprocess.Popen[bytes] | None = None,
    log: Path | None = None,
) -> None:
    """Block until the health service reports ``wanted`` (Watch: no polling)."""
    end = time.monotonic() + deadline
    with grpc.insecure_channel(address, options=_FAST_RECONNECT) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            if process is not None and process.poll() is not None:
                text = log.read_text() if log else ""
                raise AssertionError(f"server exited with {process.returncode}:\n{text}")
            remaining = end - time.monotonic()
            if remaining <= 0:
                text = log.read_text() if log else ""
                raise AssertionError(f"{address} never reported status {wanted}:\n{text}")
            try:
                for update in health.Watch(
                    health_pb2.HealthCheckRequest(service=""),
                    timeout=min(remaining, 2.0),
                    wait_for_ready=True,
                ):
                    if update.status == wanted:
                        return
            except grpc.RpcError:
                continue


class ServerProcess:
    """`python -m fusebox.controlplane.cli serve` on a free loopback port."""

    def __init__(self, workdir: Path, *, store_url: str | None = None, port: int | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.store_url = store_url
        self.extra_args = extra_args
        self.log = workdir / f"server-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *, wait: bool = True) -> None:
        argv = [sys.executable, "-m", "fusebox.controlplane.cli", "serve", "--listen", self.address,
                "--data-dir", str(self.workdir / "data"), "--log-level", "debug", *self.extra_args]
        if self.store_url:
            argv += ["--store", self.store_url]
        with self.log.open("ab") as log_file:
            self.process = subprocess.Popen(
                argv, stdout=log_file, stderr=subprocess.STDOUT, cwd=REPOSITORY, env=child_env()
            )
        if wait:
            wait_for_health(self.address, health_pb2.HealthCheckResponse.SERVING,
                            deadline=START_DEADLINE_SECONDS, process=self.process, log=self.log)

    def stop(self) -> int:
        """SIGTERM and wait: the graceful path. Returns the exit code."""
        if self.process is None:
            return 0
        self.process.terminate()
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            if os.environ.get("FUSEBOX_DEBUG_STUCK"):
                subprocess.run(["py-spy", "dump", "--pid", str(self.process.pid)], check=False)
            self.process.kill()
            code = self.process.wait()
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AgentProcess:
    """`python -m tests.e2e.cluster_agent`: a service instance with an embedded agent.

    Its JSON-lines output is collected in ``events``; ``wait_for`` blocks on a
    condition over them with a deadline.
    """

    def __init__(self, workdir: Path, name: str, server: str, upstream: str,
                 *extra: str) -> None:
        import json
        import threading

        self.name = name
        self.events: list[dict[str, object]] = []
        self._changed = threading.Condition()
        self.log = workdir / f"agent-{name}.log"
        argv = [sys.executable, "-m", "tests.e2e.cluster_agent", "--server", server,
                "--upstream", upstream, "--cache-path", str(workdir / f"cache-{name}.pb"), *extra]
        self._stderr = self.log.open("wb")
        self.process = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            cwd=REPOSITORY, env=child_env(),
        )

        def read() -> None:
            assert self.process.stdout is not None
            for line in self.process.stdout:
                with self._changed:
                    self.events.append(json.loads(line))
                    self._changed.notify_all()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()

    def states(self) -> list[tuple[object, object]]:
        with self._changed:
            return [(e["from"], e["to"]) for e in self.events if e["event"] == "state"]

    def wait_for(self, condition: Callable[[list[dict[str, object]]], bool],
                 deadline: float, what: str) -> None:
        end = time.monotonic() + deadline
        with self._changed:
            while not condition(self.events):
                remaining = end - time.monotonic()
                if remaining <= 0 or self.process.poll() is not None:
                    raise AssertionError(
                        f"agent {self.name}: {what} did not happen in {deadline}s; "
                        f"events={self.events[-10:]}\n{self.log.read_text()[-3000:]}"
                    )
                self._changed.wait(min(remaining, 0.2))

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._stderr.close()
