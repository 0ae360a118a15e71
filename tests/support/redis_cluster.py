"""A real 3-master Redis Cluster for tests: ``redis-server --cluster-enabled yes`` on
free 127.0.0.1 ports in a private directory, joined by ``redis-cli --cluster create``.

>>> cluster = RedisClusterProcesses(tmp_path)
>>> cluster.start()     # returns once every node reports cluster_state:ok
>>> cluster.url         # 'redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3'
>>> cluster.flushall()  # every master
>>> cluster.stop()
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.redis_server import RedisServer, free_port

__all__ = ["RedisClusterProcesses"]

_MAX_CLUSTER_PORT = 55535  # the cluster bus listens on port + 10000

_DEADLINE = 20.0


class RedisClusterProcesses:
    """``masters`` cluster-enabled redis-server processes, no replicas, no persistence."""

    def __init__(self, directory: Path, *, masters: int = 3) -> None:
        self.directory = Path(directory)
        self.ports = [_cluster_port() for _ in range(masters)]
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)
        self._processes: list[subprocess.Popen[bytes]] = []
        # RedisServer here only for its small RESP client (command()); it starts nothing.
        self._clients = [RedisServer(self.directory / str(port), port=port) for port in self.ports]

    def start(self) -> None:
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        try:
            for port in self.ports:
                node_dir = self.directory / str(port)
                node_dir.mkdir(parents=True, exist_ok=True)
                self._processes.append(subprocess.Popen(
                    [executable, "--bind", "127.0.0.1", "--port", str(port),
                     "--dir", str(node_dir), "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                     "--appendonly", "no", "--save", "", "--logfile", str(node_dir / "redis.log"),
                     "--daemonize", "no"],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                ))
            for client in self._clients:
                self._wait(lambda c=client: c.command("PING") == "PONG", "answer PING")
            if any(process.poll() is not None for process in self._processes):
                raise RuntimeError(f"a cluster node exited; logs under {self.directory}")
            subprocess.run(
                [shutil.which("redis-cli") or "/usr/bin/redis-cli", "--cluster", "create",
                 *(f"127.0.0.1:{port}" for port in self.ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=_DEADLINE,
            )
            for client in self._clients:
                self._wait(lambda c=client: "cluster_state:ok" in c.command("CLUSTER", "INFO"),
                           "report cluster_state:ok")
        except BaseException:
            self.stop()
            raise

    def flushall(self) -> None:
        """Empties every master (slots stay assigned)."""
        for client in self._clients:
            if client.command("FLUSHALL") != "OK":
                raise RuntimeError(f"FLUSHALL failed on cluster node {client.port}")

    def node_of_key(self, key: str) -> int:
        """The port of the master that owns ``key``'s slot."""
        slot = int(self._clients[0].command("CLUSTER", "KEYSLOT", key))
        for client in self._clients:
            # CLUSTER COUNTKEYSINSLOT answers on any node; ownership: the node's own
            # "myself" line in CLUSTER NODES lists its slot ranges.
            for line in client.command("CLUSTER", "NODES").splitlines():
                fields = line.split()
                if "myself" not in fields[2]:
                    continue
                for slot_range in fields[8:]:
                    low, _, high = slot_range.partition("-")
                    if low.isdigit() and int(low) <= slot <= int(high or low):
                        return client.port
        raise RuntimeError(f"no master owns slot {slot} of {key!r}")

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes = []

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + _DEADLINE
        while True:
            if any(process.poll() is not None for process in self._processes):
                raise RuntimeError(f"a cluster node exited; logs under {self.directory}")
            try:
                if condition():
                    return
            except (OSError, ValueError):
                pass  # not listening yet, or not answering yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis cluster node did not {what} in {_DEADLINE}s")
            time.sleep(0.02)  # poll interval while waiting for the condition above


def _cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too."""
    while True:
        port = free_port()
        if port > _MAX_CLUSTER_PORT:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
