"""Name resolution for the sidecar: register our app's address, resolve other apps'.

``InstanceHeartbeat`` keeps this sidecar's app registered (a lease renewed
every third of its TTL, removed on stop). ``AppResolver`` answers "where does
app X listen?" from the control plane's ``RegistryService``, caches answers
for a moment, and hands out the addresses of several instances round-robin.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from fusebox.v1 import registry_pb2, registry_pb2_grpc

log = logging.getLogger("fusebox.sidecar")

RPC_TIMEOUT = 2.0
DEFAULT_LEASE_TTL = 10.0
RESOLVE_CACHE_SECONDS = 1.0


class AppNotFound(Exception):
    """No live instance of ``app_id`` is registered with the control plane."""

    def __init__(self, app_id: str, detail: str = "") -> None:
        self.app_id = app_id
        super().__init__(f"couldn't find service: {app_id}" + (f" ({detail})" if detail else ""))


@dataclass(frozen=True, slots=True)
class RegistryConnection:
    """How to reach the control plane's RegistryService."""

    address: str
    namespace: str = "default"
    token: str | None = None
    credentials: Any = None  # grpc.ChannelCredentials for TLS; None: plaintext

    def channel(self) -> grpc.aio.Channel:
        if self.credentials is not None:
            return grpc.aio.secure_channel(self.address, self.credentials)
        return grpc.aio.insecure_channel(self.address)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


class InstanceHeartbeat:
    """Registers ``app_id`` at ``address`` until ``stop()``; renews the lease meanwhile."""

    def __init__(self, connection: RegistryConnection, app_id: str, instance_id: str,
                 address: str, ttl: float = DEFAULT_LEASE_TTL) -> None:
        self._connection = connection
        self._request = registry_pb2.RegisterInstanceRequest(
            namespace=connection.namespace, app_id=app_id,
            instance=registry_pb2.AppInstance(instance_id=instance_id, address=address),
        )
        self._request.ttl.FromNanoseconds(int(ttl * 1e9))
        self._ttl = ttl
        self._channel = connection.channel()
        self._stub = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._task: asyncio.Task[None] | None = None
        self.registered = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sidecar-heartbeat")

    async def _run(self) -> None:
        while True:
            try:
                await self._stub.RegisterInstance(
                    self._request, timeout=RPC_TIMEOUT, metadata=self._connection.metadata)
                if not self.registered.is_set():
                    log.info("registered app %s at %s", self._request.app_id,
                             self._request.instance.address)
                self.registered.set()
                wait = self._ttl / 3
            except grpc.RpcError as e:
                # The lease may lapse meanwhile: callers then see no instance, as they should.
                log.warning("cannot register app %s with the control plane: %s",
                            self._request.app_id, e.details() if hasattr(e, "details") else e)
                wait = min(1.0, self._ttl / 3)
            await asyncio.sleep(wait)

    async def stop(self) -> None:
        """Stop renewing and remove the instance at once (best effort)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(grpc.RpcError):
            await self._stub.DeregisterInstance(
                registry_pb2.DeregisterInstanceRequest(
                    namespace=self._request.namespace, app_id=self._request.app_id,
                    instance_id=self._request.instance.instance_id),
                timeout=RPC_TIMEOUT, metadata=self._connection.metadata)
        await self._channel.close()


class AppResolver:
    """Resolves app-ids to ``host:port`` through the control plane, round-robin.

    Answers are cached for ``cache_seconds``; ``forget(app_id)`` drops one (an
    address that refused a connection), so a restarted instance is found soon.
    """

    def __init__(self, connection: RegistryConnection, caller_app_id: str,
                 cache_seconds: float = RESOLVE_CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._connection = connection
        self._caller = caller_app_id
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._channel = connection.channel()
        self._stub = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._turn: dict[str, int] = {}

    async def addresses(self, app_id: str) -> list[str]:
        """Every live address of ``app_id`` (possibly empty); raises ``AppNotFound`` if the
        control plane cannot be asked."""
        cached = self._cache.get(app_id)
        if cached is not None and cached[0] > self._clock():
            return cached[1]
        try:
            response = await self._stub.ResolveApp(
                registry_pb2.ResolveAppRequest(namespace=self._connection.namespace,
                                               app_id=app_id, caller_app_id=self._caller),
                timeout=RPC_TIMEOUT, metadata=self._connection.metadata)
        except grpc.RpcError as e:
            if cached is not None:  # the control plane is away: the last answer is our best
                return cached[1]
            raise AppNotFound(app_id, f"control plane: {e.code().name}") from None
        found = [i.address for i in response.instances]
        self._cache[app_id] = (self._clock() + self._cache_seconds, found)
        return found

    async def next_address(self, app_id: str) -> str:
        """The next instance's address, turn by turn; ``AppNotFound`` if there is none."""
        found = await self.addresses(app_id)
        if not found:
            self.forget(app_id)  # ask again next time: an instance may be starting
            raise AppNotFound(app_id)
        turn = self._turn.get(app_id, 0)
        self._turn[app_id] = turn + 1
        return found[turn % len(found)]

    def forget(self, app_id: str) -> None:
        self._cache.pop(app_id, None)

    async def close(self) -> None:
        await self._channel.close()
