"""A real Sentinel setup for tests: a master, ``replicas`` replicas and ``sentinels`` sentinels,
all on free 127.0.0.1 ports in a private directory, with short failure timeouts
(``down-after-milliseconds`` 1000) so a failover takes a few seconds.

>>> setup = RedisSentinelSetup(tmp_path)
>>> setup.start()              # returns once the sentinels see the master and the replica
>>> setup.url                  # 'redis+sentinel://127.0.0.1:S1/mymaster'
>>> setup.kill_master()        # SIGKILL
>>> setup.wait_for_promotion() # the new master's port, once Sentinel switched to it
>>> setup.stop()

With one replica, killing the master leaves no replica to acknowledge writes
(``WAIT 1`` then never succeeds until one comes back); two replicas keep one
after a failover.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from tests.support.redis_server import RedisServer, free_port

__all__ = ["MASTER_NAME", "RedisSentinelSetup"]

MASTER_NAME = "mymaster"
_DEADLINE = 20.0
_DOWN_AFTER_MS = 1000
_FAILOVER_TIMEOUT_MS = 3000


class RedisSentinelSetup:
    """Master + replica (``redis-server``) and sentinels (``redis-server --sentinel``)."""

    def __init__(self, directory: Path, *, replicas: int = 1, sentinels: int = 1) -> None:
        self.directory = Path(directory)
        self.master_port = free_port()
        self.replica_ports = [free_port() for _ in range(replicas)]
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        self.url = f"redis+sentinel://{hosts}/{MASTER_NAME}"
        self._processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        try:
            self._spawn(self.master_port, [])
            self._wait(lambda: self._client(self.master_port).command("PING") == "PONG",
                       "master answers PING")
            for replica in self.replica_ports:
                self._spawn(replica, ["--replicaof", "127.0.0.1", str(self.master_port)])
            for replica in self.replica_ports:
                self._wait(lambda r=replica: "master_link_status:up" in self._info(r,
                                                                                   "replication"),
                           f"replica {replica} in sync with the master")
            quorum = len(self.sentinel_ports) // 2 + 1
            for port in self.sentinel_ports:
                config = self.directory / f"sentinel-{port}.conf"
                config.write_text(
                    f"port {port}\nbind 127.0.0.1\ndir {self.directory}\n"
                    f"logfile {self.directory / f'sentinel-{port}.log'}\n"
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} {quorum}\n"
                    f"sentinel down-after-milliseconds {MASTER_NAME} {_DOWN_AFTER_MS}\n"
                    f"sentinel failover-timeout {MASTER_NAME} {_FAILOVER_TIMEOUT_MS}\n"
                    f"sentinel parallel-syncs {MASTER_NAME} 1\n"
                )
                self._spawn(port, [], config=config)
            for port in self.sentinel_ports:
                self._wait(lambda p=port: f"slaves={len(self.replica_ports)},"
                           in self._info(p, "sentinel"),
                           f"sentinel {port} sees the master and its replicas")
        except BaseException:
            self.stop()
            raise

    def kill_master(self) -> None:
        """SIGKILL the current master: no shutdown work at all."""
        process = self._processes.pop(self.master_port)
        process.kill()
        process.wait()

    def wait_for_promotion(self) -> int:
        """Blocks until every sentinel reports a replica as the master; returns its port.

        The other replicas, if any, then replicate from it (Sentinel reconfigures
        them before it switches the master's address).
        """
        old = self.master_port
        promoted: list[int] = []

        def switched() -> bool:
            masters = {self._master_address(port) for port in self.sentinel_ports}
            if len(masters) != 1 or (new := masters.pop()) not in self.replica_ports:
                return False
            if "role:master" not in self._info(new, "replication"):
                return False
            promoted.append(new)
            return True

        self._wait(switched, f"Sentinel promotes a replica after master {old} died")
        self.master_port = promoted[-1]
        self.replica_ports = [port for port in self.replica_ports if port != self.master_port]
        return self.master_port

    def _master_address(self, sentinel_port: int) -> int:
        info = self._info(sentinel_port, "sentinel")
        address = info.partition("address=127.0.0.1:")[2].partition(",")[0]
        return int(address) if address.isdigit() else -1

    def wait_for_replicas_in_sync(self) -> None:
        """Blocks until every remaining replica's link to the current master is up."""
        for replica in self.replica_ports:
            if replica in self._processes:
                self._wait(lambda r=replica: "master_link_status:up" in self._info(r,
                                                                                   "replication")
                           and f"master_port:{self.master_port}\r" in self._info(r,
                                                                                 "replication"),
                           f"replica {replica} in sync with master {self.master_port}")

    def master_command(self, *arguments: str) -> str:
        return self._client(self.master_port).command(*arguments)

    def stop(self) -> None:
        for process in self._processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self._processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes = {}

    # -- plumbing ----------------------------------------------------------------

    def _spawn(self, port: int, extra: list[str], *, config: Path | None = None) -> None:
        executable = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.directory.mkdir(parents=True, exist_ok=True)
        if config is not None:
            argv = [executable, str(config), "--sentinel"]
        else:
            node_dir = self.directory / str(port)
            node_dir.mkdir(exist_ok=True)
            argv = [executable, "--bind", "127.0.0.1", "--port", str(port),
                    "--dir", str(node_dir), "--appendonly", "no", "--save", "",
                    "--logfile", str(node_dir / "redis.log"), "--daemonize", "no", *extra]
        self._processes[port] = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )

    def _client(self, port: int) -> RedisServer:
        # RedisServer here only for its small RESP client (command()); it starts nothing.
        return RedisServer(self.directory / str(port), port=port)

    def _info(self, port: int, section: str) -> str:
        return self._client(port).command("INFO", section)

    def _wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + _DEADLINE
        while True:
            try:
                if condition():
                    return
            except (OSError, ValueError):
                pass  # not listening yet, or not answering yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"{what}: did not happen in {_DEADLINE}s")
            time.sleep(0.02)  # poll interval while waiting for the condition above
