"""The agent's link to the control plane (AgentService.Connect).

One implementation (``_LinkLoop``, asyncio) with two hosts: ``AsyncPolicyLink``
runs it as a task on the application's event loop; ``PolicyLink`` runs it on a
private event loop in a daemon thread for synchronous applications. Either way
nothing here ever runs on a guarded call's path: the link only calls
``on_policies`` (an atomic swap in the agent) when a snapshot arrives.

Protocol, per connection: send Hello (with the digest of the policies held),
receive PolicySnapshot, answer ACK (applied) or NACK (``on_policies`` raised
ValueError; the previous policies stay). Reconnect with jittered exponential
backoff. The last accepted snapshot is cached on disk and loaded at start, so
a restarted instance enforces its policies even while the server is down.

Cluster mode (when the link is given the agent's ``BreakerRegistry``): after
the first snapshot the link sends the interest of every live breaker, starts
the ``ClusterSync`` flusher (interest changes and outcome reports, every
``report_interval``) and hands it breaker updates, mode changes and report
rejections as they arrive. Writes to the stream are serialised by one lock.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import os
import random
import threading
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from agent._cluster import ClusterConfig, ClusterSync
from agent._policy import ResolvedPolicies, resolved_from_proto
from agent._proto.fusebox.v1 import agent_pb2, agent_pb2_grpc, policy_pb2
from agent._registry import BreakerRegistry
from agent._reporting import ReportLimits

log = logging.getLogger("fusebox.agent.link")

AGENT_VERSION = "0.1.0"
LOOP_DRAIN_SECONDS = 0.05
STOP_RETRY_SECONDS = 1.0  # a link not stopped by a cancel within this gets another
OnPolicies = Callable[[ResolvedPolicies], None]

_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
]


PemSource = str | os.PathLike[str] | bytes  # a PEM file's path, or its contents


def _pem(source: PemSource | None) -> bytes | None:
    if source is None or isinstance(source, bytes):
        return source
    return Path(source).read_bytes()


def channel_credentials(
    tls_ca: PemSource | None = None,
    tls_cert: PemSource | None = None,
    tls_key: PemSource | None = None,
) -> grpc.ChannelCredentials:
    """TLS credentials for the link: ``tls_ca`` verifies the server (None: system roots),
    ``tls_cert`` + ``tls_key`` are the client certificate for mTLS.

    Each is a PEM file path or the PEM bytes themselves.
    """
    if (tls_cert is None) != (tls_key is None):
        raise ValueError("tls_cert and tls_key go together: give both for mTLS, or neither")
    return grpc.ssl_channel_credentials(
        root_certificates=_pem(tls_ca), private_key=_pem(tls_key),
        certificate_chain=_pem(tls_cert),
    )


class _BearerToken:
    """Adds ``authorization: Bearer <token>`` to a call's metadata."""

    def __init__(self, token: str) -> None:
        self._header = f"Bearer {token.strip()}"

    def _details(self, details: Any) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add("authorization", self._header)
        return details._replace(metadata=metadata)


# grpc.aio files each interceptor under one call kind only: one class per kind.
class _UnaryBearerToken(_BearerToken, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(self._details(details), request)


class _StreamBearerToken(_BearerToken, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(
        self, continuation: Any, details: Any, request_iterator: Any
    ) -> Any:
        return await continuation(self._details(details), request_iterator)


def default_cache_dir() -> Path:
    """$FUSEBOX_CACHE_DIR, else $XDG_CACHE_HOME/fusebox, else ~/.cache/fusebox."""
    if env := os.environ.get("FUSEBOX_CACHE_DIR"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fusebox"


@dataclass(frozen=True, slots=True)
class LinkConfig:
    target: str
    namespace: str = "default"
    app_id: str = ""
    instance_id: str = ""
    cache_path: str | os.PathLike[str] | None = None  # None: default_cache_dir()/<ns>__<app>.pb
    reconnect_initial: float = 0.1
    reconnect_max: float = 5.0
    channel_options: list[tuple[str, int]] = field(default_factory=lambda: list(_CHANNEL_OPTIONS))
    report_interval: float = 0.01  # seconds between outcome reports (cluster mode)
    probe_lease_timeout: float = 0.1  # deadline of a half-open probe lease request
    report_limits: ReportLimits = field(default_factory=ReportLimits)
    credentials: grpc.ChannelCredentials | None = None  # None: plaintext (loopback)
    token: str | None = field(default=None, repr=False)  # bearer token of an agent role

    def open_channel(self) -> grpc.aio.Channel:
        """A new channel to the control plane with this config's security."""
        interceptors = (
            [_UnaryBearerToken(self.token), _StreamBearerToken(self.token)]
            if self.token else None
        )
        if self.credentials is not None:
            return grpc.aio.secure_channel(self.target, self.credentials,
                                           options=self.channel_options,
                                           interceptors=interceptors)
        return grpc.aio.insecure_channel(self.target, options=self.channel_options,
                                         interceptors=interceptors)

    def cluster_config(self) -> ClusterConfig:
        return ClusterConfig(self.report_interval, self.probe_lease_timeout, self.report_limits)

    def resolved_cache_path(self) -> Path:
        if self.cache_path is not None:
            return Path(self.cache_path)
        return default_cache_dir() / f"{self.namespace}__{self.app_id}.policies.pb"


# One thread writes every link's policy cache, in submission order.
_CACHE_WRITER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fusebox-cache")
#: How long a starting link waits for saves queued before it (then it reads what is there).
CACHE_BARRIER_SECONDS = 5.0


def _nothing() -> None:
    """A no-op for the cache writer: done once every save queued before it is."""

class PolicyCache:
    """The last accepted snapshot on disk (written atomically: temp file + rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> ResolvedPolicies | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("cannot read the policy cache %s: %s", self.path, e)
            return None
        try:
            return resolved_from_proto(policy_pb2.ResolvedPolicies.FromString(data))
        except Exception as e:  # a corrupt cache must never stop the service
            log.warning("ignoring unreadable policy cache %s: %s", self.path, e)
            return None

    def save(self, message: policy_pb2.ResolvedPolicies) -> None:
        data = message.SerializeToString(deterministic=True)
        # A temp name of this link's own (processes of one app may share the
        # cache path): cheaper than mkstemp's probing, and never a torn file.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}-{id(self):x}.tmp")
        try:
            try:
                tmp.write_bytes(data)
            except FileNotFoundError:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                tmp.write_bytes(data)
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("cannot write the policy cache %s: %s", self.path, e)
            with contextlib.suppress(OSError):
                tmp.unlink()


#: Cache writes wait for the policies to settle: a burst of snapshots (a fleet-wide
#: push, a spec edited twice in a row) costs one write, made after the burst, where
#: its disk I/O and the writer thread's GIL hand-offs slow nothing down.
CACHE_SETTLE_SECONDS = 2.0
CACHE_MAX_DELAY_SECONDS = 30.0  # under constant churn, still written this often


class DeferredCacheWrite:
    """The newest accepted snapshot not yet on disk, and when it will be.

    Written ``CACHE_SETTLE_SECONDS`` after the last snapshot, at most
    ``CACHE_MAX_DELAY_SECONDS`` after the first unsaved one, at once when the
    link stops, and synchronously at interpreter exit. Used on the link's loop.
    """

    def __init__(self, cache: PolicyCache) -> None:
        self.cache = cache
        self.message: policy_pb2.ResolvedPolicies | None = None
        self._first_unsaved = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def offer(self, message: policy_pb2.ResolvedPolicies) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.message is None:
            self._first_unsaved = now
        self.message = message
        _UNSAVED.add(self)
        if self._timer is not None:
            self._timer.cancel()
        due = min(now + CACHE_SETTLE_SECONDS, self._first_unsaved + CACHE_MAX_DELAY_SECONDS)
        self._timer = loop.call_at(due, self.flush)

    def flush(self) -> None:
        """Hand the pending snapshot to the writer thread now (FIFO with other links)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        message, self.message = self.message, None
        _UNSAVED.discard(self)
        if message is not None:
            _CACHE_WRITER.submit(self.cache.save, message)


_UNSAVED: weakref.WeakSet[DeferredCacheWrite] = weakref.WeakSet()


@atexit.register
def _write_unsaved_caches() -> None:
    # The writer thread may be gone already: write here, in the exiting thread.
    for pending in list(_UNSAVED):
        message, pending.message = pending.message, None
        if message is not None:
            pending.cache.save(message)


class _LinkLoop:
    """Connect, sync, reconnect: the protocol, independent of how it is hosted."""

    def __init__(
        self, config: LinkConfig, on_policies: OnPolicies,
        registry: BreakerRegistry | None = None,
    ) -> None:
        self.config = config
        self._on_policies = on_policies
        self.cluster = (
            ClusterSync(registry, config.cluster_config(), config.instance_id)
            if registry is not None else None
        )
        self._cache = PolicyCache(config.resolved_cache_path())
        self._cache_write = DeferredCacheWrite(self._cache)
        self.digest = ""
        self.connected = False
        self.snapshots_applied = 0
        #: Set by the host when it closes the link: no new session is started.
        self.stopping = False
        self.on_synced: Callable[[], None] = lambda: None
        self._warned_unreachable = False

    def load_cache(self) -> bool:
        """Apply the cached policies, if any (the host first lets queued saves land)."""
        cached = self._cache.load()
        if cached is None or cached.app_id != self.config.app_id:
            return False
        try:
            self._on_policies(cached)
        except ValueError as e:
            log.warning("cached policies rejected: %s", e)
            return False
        self.digest = cached.digest
        log.info("loaded cached policies (digest %s) from %s", cached.digest, self._cache.path)
        return True

    async def run(self) -> None:
        if self.cluster is not None:
            self.cluster.bind(asyncio.get_running_loop())
        try:
            await self._connect_forever()
        finally:
            self._cache_write.flush()  # the link stops: the last policies go to disk now

    async def _connect_forever(self) -> None:
        delay = self.config.reconnect_initial
        while not self.stopping:
            try:
                await self._session()
                delay = self.config.reconnect_initial
            except grpc.aio.AioRpcError as e:
                self._note_unreachable(e)
            except asyncio.InvalidStateError:
                pass  # a write raced the end of the call: the stream is gone, reconnect
            except Exception:
                # The link must outlive any bug in one session: log it, reconnect.
                log.exception("control plane link failed; reconnecting")
            finally:
                self.connected = False
            # Full jitter keeps a fleet that lost its server from reconnecting in lockstep.
            await asyncio.sleep(random.uniform(0, delay))
            delay = min(delay * 2, self.config.reconnect_max)

    def _note_unreachable(self, error: grpc.aio.AioRpcError) -> None:
        if self._warned_unreachable:
            log.debug("control plane %s unreachable: %s", self.config.target, error.code())
            return
        self._warned_unreachable = True
        if error.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
            # Retrying will not help until the token (or the tokens file) changes.
            log.error("control plane %s refused this agent (%s: %s); check its token",
                      self.config.target, error.code().name, error.details())
        elif self.digest:
            log.warning("control plane %s unreachable (%s); keeping the current policies",
                        self.config.target, error.code().name)
        else:
            # The agent itself says once that calls pass through without policies.
            log.warning("control plane %s unreachable (%s); retrying with backoff",
                        self.config.target, error.code().name)

    async def _session(self) -> None:
        async with self.config.open_channel() as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            call = stub.Connect()
            write_lock = asyncio.Lock()

            async def send(message: agent_pb2.ConnectRequest) -> None:
                async with write_lock:  # the flusher and the reader both write
                    await call.write(message)

            await send(agent_pb2.ConnectRequest(hello=agent_pb2.Hello(
                namespace=self.config.namespace,
                app_id=self.config.app_id,
                instance_id=self.config.instance_id,
                last_policy_digest=self.digest,
                agent_version=AGENT_VERSION,
            )))
            flusher: asyncio.Task[None] | None = None
            try:
                while True:
                    response = await call.read()
                    if response is grpc.aio.EOF:
                        return
                    if not self.connected:
                        self.connected = True
                        if self._warned_unreachable:
                            log.info("control plane %s reachable again", self.config.target)
                        self._warned_unreachable = False
                    if response.WhichOneof("message") == "snapshot":
                        interest = None
                        if self.cluster is not None and flusher is None:
                            # Follow the cluster before the first policies are
                            # swapped in: a call made right after the swap must
                            # already be reported, not run local-only.
                            interest = self.cluster.session_started(stub)
                        await send(self._apply(response.snapshot))
                        if self.cluster is not None and interest is not None:
                            await send(interest)
                            flusher = asyncio.create_task(
                                self._flush(self.cluster, send), name="fusebox-reports"
                            )
                    elif self.cluster is not None:
                        answer = self.cluster.on_response(response)
                        if answer is not None:
                            await send(answer)
            finally:
                if flusher is not None:
                    flusher.cancel()
                    # asyncio.wait neither raises the flusher's cancellation nor
                    # swallows one aimed at this task (awaiting it under a
                    # suppress(CancelledError) would). A write that raced the end
                    # of the stream fails the flusher; the session's own outcome
                    # (above) is what counts.
                    await asyncio.wait({flusher})
                    error = None if flusher.cancelled() else flusher.exception()
                    if error is not None and not isinstance(
                            error, (asyncio.InvalidStateError, grpc.aio.AioRpcError)):
                        raise error
                if self.cluster is not None:
                    task = asyncio.current_task()
                    self.cluster.session_ended(closing=task is not None and task.cancelling() > 0)
                call.cancel()

    @staticmethod
    async def _flush(cluster: ClusterSync, send: Callable[[agent_pb2.ConnectRequest],
                                                          Awaitable[None]]) -> None:
        try:
            await cluster.run_flusher(send)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, RuntimeError) as e:
            # The stream broke under a write; the reader sees it too and reconnects.
            log.debug("outcome reports stopped: %s", e)

    def _apply(self, snapshot: agent_pb2.PolicySnapshot) -> agent_pb2.ConnectRequest:
        digest = snapshot.policies.digest
        try:
            policies = resolved_from_proto(snapshot.policies)
            self._on_policies(policies)
        except (ValueError, KeyError) as e:
            log.warning("policy snapshot %s rejected, keeping the previous policies: %s",
                        digest, e)
            return agent_pb2.ConnectRequest(
                policy_ack=agent_pb2.PolicyAck(digest=digest, accepted=False, error=str(e))
            )
        if digest != self.digest:
            # Later, and off the event loop (an AsyncAgent shares the
            # application's): see DeferredCacheWrite.
            self._cache_write.offer(snapshot.policies)
            log.info("policies applied (digest %s, %d targets)", digest, len(policies.targets))
        self.digest = digest
        self.snapshots_applied += 1
        self.on_synced()
        ack = agent_pb2.PolicyAck(digest=digest, accepted=True)
        return agent_pb2.ConnectRequest(policy_ack=ack)


class AsyncPolicyLink:
    """Hosts the link as a task on the running event loop (AsyncAgent)."""

    def __init__(
        self, config: LinkConfig, on_policies: OnPolicies,
        registry: BreakerRegistry | None = None,
    ) -> None:
        self._loop = _LinkLoop(config, on_policies, registry)
        self._synced = asyncio.Event()
        self._loop.on_synced = self._synced.set
        self._task: asyncio.Task[None] | None = None

    @property
    def digest(self) -> str:
        return self._loop.digest

    @property
    def connected(self) -> bool:
        return self._loop.connected

    @property
    def cluster(self) -> ClusterSync | None:
        """The cluster-mode side of the link (None without a breaker registry)."""
        return self._loop.cluster

    async def start(self) -> None:
        # Saves other links of this process queued land first (FIFO writer),
        # without blocking the application's loop while they do.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.wrap_future(_CACHE_WRITER.submit(_nothing)),
                                   CACHE_BARRIER_SECONDS)
        self._loop.load_cache()
        self._task = asyncio.create_task(self._loop.run(), name="fusebox-link")

    async def wait_synced(self, timeout: float | None = None) -> bool:
        """True once a snapshot from the server was applied (within ``timeout``)."""
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._loop.stopping = True
        # A cancellation that lands inside grpc.aio can come back out as an
        # AioRpcError (CANCELLED) and be taken for a failed session: the stop
        # flag ends the loop anyway, and the cancel is repeated until it does.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=STOP_RETRY_SECONDS)
        with contextlib.suppress(asyncio.CancelledError):
            await task


class PolicyLink:
    """Hosts the link on a private event loop in a daemon thread (sync Agent)."""

    def __init__(
        self, config: LinkConfig, on_policies: OnPolicies,
        registry: BreakerRegistry | None = None,
    ) -> None:
        self._loop = _LinkLoop(config, on_policies, registry)
        self._synced = threading.Event()
        self._loop.on_synced = self._synced.set
        self._thread: threading.Thread | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = threading.Event()

    @property
    def digest(self) -> str:
        return self._loop.digest

    @property
    def connected(self) -> bool:
        return self._loop.connected

    @property
    def cluster(self) -> ClusterSync | None:
        """The cluster-mode side of the link (None without a breaker registry)."""
        return self._loop.cluster

    def start(self) -> None:
        with contextlib.suppress(concurrent.futures.TimeoutError):  # see AsyncPolicyLink
            _CACHE_WRITER.submit(_nothing).result(timeout=CACHE_BARRIER_SECONDS)
        self._loop.load_cache()
        self._thread = threading.Thread(target=self._main, name="fusebox-link", daemon=True)
        self._thread.start()
        self._started.wait()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._event_loop = loop
        self._task = loop.create_task(self._loop.run())
        self._started.set()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(self._task)
        # grpc.aio may still deliver completion events for the closed channel to
        # this loop; closing it at once makes grpc log "Event loop is closed".
        loop.run_until_complete(asyncio.sleep(LOOP_DRAIN_SECONDS))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    def wait_synced(self, timeout: float | None = None) -> bool:
        return self._synced.wait(timeout)

    def close(self) -> None:
        self._loop.stopping = True  # see AsyncPolicyLink.aclose
        thread, self._thread = self._thread, None
        for _ in range(5):  # bounded: a daemon thread never holds the process open
            if self._event_loop is not None and self._task is not None:
                with contextlib.suppress(RuntimeError):  # loop already closed
                    self._event_loop.call_soon_threadsafe(self._task.cancel)
            if thread is None:
                return
            thread.join(timeout=STOP_RETRY_SECONDS)
            if not thread.is_alive():
                return
