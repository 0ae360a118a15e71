"""The agent's link to the control plane (AgentService.Connect).

One implementation (``_LinkLoop``, asyncio) with two hosts: ``AsyncPolicyLink``
runs it as a task on the application's event loop; ``PolicyLink`` runs it on a
private event loop in a daemon thread for synchronous applications. Either way
nothing here ever runs on a guarded call's path: the link only calls
``on_policies`` (an atomic swap in the agent) when a snapshot arrives.

Protocol, per connection: send Hello (with the digest of the policies held),
receive PolicySnapshot, answer ACK (applied) or NACK (``on_policies`` raised
ValueError; the previous policies stay). Reconnect with jittered exponential
backoff.

Ready before guarding: the host's ``start`` returns once the *initial fetch*
is over: the first snapshot was applied, or ``initial_fetch_timeout`` passed.
Only then, and only if no snapshot came, is the disk cache of the last
accepted snapshot applied, and only if it was written for the same server
address, namespace and app-id (``CachedPolicies``). A snapshot from a control
plane other than the one that wrote the cache overwrites it at once.

Cluster mode (when the link is given the agent's ``BreakerRegistry``): after
the first snapshot the link sends the interest of every live breaker, starts
the ``ClusterSync`` flusher (interest changes and outcome reports, every
``report_interval``) and hands it breaker updates, mode changes and report
rejections as they arrive. Writes to the stream are serialised by one lock.
Fleet budgets (given the agent's ``BudgetRegistry``) ride the same flusher and
stream (``fusebox.agent._budget_sync``); without the breaker registry
(``cluster_breakers=False``) the flusher runs over no breakers, for them alone.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import datetime
import logging
import os
import random
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import grpc
from google.protobuf.message import DecodeError

from fusebox.agent._budget_sync import BudgetSync
from fusebox.agent._budgets import BudgetRegistry
from fusebox.agent._cluster import ClusterConfig, ClusterSync
from fusebox.agent._policy_source import PolicySource
from fusebox.agent._registry import BreakerRegistry
from fusebox.agent._reporting import ReportLimits
from fusebox.agent.budget import BudgetKey
from fusebox.agent.clock import SYSTEM_CLOCK
from fusebox.agent.events import EventHooks
from fusebox.agent.policy import ResolvedPolicies, resolved_from_proto
from fusebox.v1 import agent_pb2, agent_pb2_grpc, policy_pb2

log = logging.getLogger("fusebox.agent.link")

AGENT_VERSION = "0.1.0"
LOOP_DRAIN_SECONDS = 0.05
STOP_RETRY_SECONDS = 1.0  # a link not stopped by a cancel within this gets another
#: Swaps policies in (raises ValueError to refuse them), saying where they came from.
OnPolicies = Callable[[ResolvedPolicies, PolicySource], None]
_Event = TypeVar("_Event", threading.Event, asyncio.Event)

#: One connection per agent (pick_first: the Connect stream and the probe leases must
#: reach the same replica, which grants leases only to instances it holds), to an
#: address picked at random among those the target resolves to, so a fleet spreads
#: over the replicas whatever order DNS or an ``ipv4:`` list gives (docs/deploy.md).
SERVICE_CONFIG = '{"loadBalancingConfig": [{"pick_first": {"shuffleAddressList": true}}]}'

_CHANNEL_OPTIONS: list[tuple[str, int | str]] = [
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.service_config", SERVICE_CONFIG),
]


#: The metadata of every call a link makes: (key, value) pairs, as grpc takes them.
CallMetadata = tuple[tuple[str, str], ...]


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
    # None: default_cache_dir()/<ns>__<app>.cached-policies.pb
    cache_path: str | os.PathLike[str] | None = None
    #: Seconds ``start`` waits for the first snapshot before falling back to the cache (0: none).
    initial_fetch_timeout: float = 3.0
    reconnect_initial: float = 0.1
    reconnect_max: float = 5.0
    channel_options: list[tuple[str, int | str]] = field(
        default_factory=lambda: list(_CHANNEL_OPTIONS))
    report_interval: float = 0.01  # seconds between outcome reports (cluster mode)
    probe_lease_timeout: float = 0.1  # deadline of a half-open probe lease request
    report_limits: ReportLimits = field(default_factory=ReportLimits)
    credentials: grpc.ChannelCredentials | None = None  # None: plaintext (loopback)
    token: str | None = field(default=None, repr=False)  # bearer token of an agent role

    def open_channel(self) -> grpc.aio.Channel:
        """A new channel to the control plane with this config's transport security."""
        if self.credentials is not None:
            return grpc.aio.secure_channel(self.target, self.credentials,
                                           options=self.channel_options)
        return grpc.aio.insecure_channel(self.target, options=self.channel_options)

    def call_metadata(self) -> CallMetadata:
        """What each call carries: ``authorization: Bearer <token>`` when there is a token.

        Passed on every call the link makes (``Connect``, ``AcquireProbeLease``)
        rather than added by a client interceptor: grpc.aio's stream-stream
        interceptor feeds the stream's writes through an async generator that
        outlives a refused or broken call, and asyncio then logs "Task was
        destroyed but it is pending" and "aclose(): asynchronous generator is
        already running" at every reconnect. Call credentials would need TLS;
        a token over plaintext loopback must keep working.
        """
        if not self.token:
            return ()
        return (("authorization", f"Bearer {self.token.strip()}"),)

    def cluster_config(self) -> ClusterConfig:
        return ClusterConfig(self.report_interval, self.probe_lease_timeout, self.report_limits)

    def resolved_cache_path(self) -> Path:
        if self.cache_path is not None:
            return Path(self.cache_path)
        # Not the name of the former format (a bare ResolvedPolicies): never misread.
        return default_cache_dir() / f"{self.namespace}__{self.app_id}.cached-policies.pb"


# One thread writes every link's policy cache, in submission order; links read
# theirs on it too, so a save queued before a read has landed when it runs.
_CACHE_WRITER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fusebox-cache")
#: How long a link waits, at its initial fetch deadline, for the saves queued
#: before its cache read (then it reads what is there).
CACHE_BARRIER_SECONDS = 5.0


class CacheUnreadable(Exception):
    """The cache file exists but cannot be read, or is not a ``CachedPolicies``."""


class PolicyCache:
    """One link's last accepted snapshot on disk, with whose it is (``CachedPolicies``).

    Written atomically (temp file + rename). ``server``, ``namespace`` and
    ``app_id`` are the link's own: they are written with the policies, and a
    cache holding others is never used (``problem``).
    """

    def __init__(self, path: Path, *, server: str, namespace: str, app_id: str) -> None:
        self.path = path
        self.server, self.namespace, self.app_id = server, namespace, app_id

    def load(self) -> agent_pb2.CachedPolicies | None:
        """What the file holds, None without a file; raises ``CacheUnreadable``."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise CacheUnreadable(f"cannot read {self.path}: {e}") from e
        not_ours = f"{self.path} is not a policy cache of this agent's format (corrupt, or older)"
        try:
            cached = agent_pb2.CachedPolicies.FromString(data)
        except DecodeError as e:  # a corrupt cache must never stop the service
            raise CacheUnreadable(f"{not_ours}: {e}") from e
        if not cached.HasField("policies"):
            # The former format (a bare ResolvedPolicies) never has this field.
            raise CacheUnreadable(not_ours)
        return cached

    def problem(self, cached: agent_pb2.CachedPolicies) -> str | None:
        """Why this link must not use ``cached`` (None: it may)."""
        if cached.server != self.server:
            return f"written for another control plane/server {cached.server or '(unknown)'}"
        if (cached.namespace, cached.app_id) != (self.namespace, self.app_id):
            return f"written for app {cached.app_id} in namespace {cached.namespace}"
        return None

    def save(self, policies: policy_pb2.ResolvedPolicies, control_plane_id: str,
             fleet_sizes: tuple[agent_pb2.BudgetFleetSize, ...] = ()) -> None:
        message = agent_pb2.CachedPolicies(
            control_plane_id=control_plane_id, server=self.server, namespace=self.namespace,
            app_id=self.app_id, policies=policies, budget_fleet_sizes=fleet_sizes,
        )
        message.written_at.FromNanoseconds(time.time_ns())
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

#: (policies, control plane id, the budgets' fleet sizes)
_Unsaved = tuple[policy_pb2.ResolvedPolicies, str, tuple[agent_pb2.BudgetFleetSize, ...]]


class DeferredCacheWrite:
    """The newest accepted snapshot not yet on disk, and when it will be.

    Written ``CACHE_SETTLE_SECONDS`` after the last snapshot, at most
    ``CACHE_MAX_DELAY_SECONDS`` after the first unsaved one, at once when the
    link stops (or ``flush``), and synchronously at interpreter exit. Used on
    the link's loop.
    """

    def __init__(self, cache: PolicyCache) -> None:
        self.cache = cache
        self.unsaved: _Unsaved | None = None
        self._first_unsaved = 0.0
        self._timer: asyncio.TimerHandle | None = None

    def offer(self, policies: policy_pb2.ResolvedPolicies, control_plane_id: str = "",
              fleet_sizes: tuple[agent_pb2.BudgetFleetSize, ...] = ()) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self.unsaved is None:
            self._first_unsaved = now
        self.unsaved = (policies, control_plane_id, fleet_sizes)
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
        unsaved, self.unsaved = self.unsaved, None
        _UNSAVED.discard(self)
        if unsaved is not None:
            _CACHE_WRITER.submit(self.cache.save, *unsaved)


_UNSAVED: weakref.WeakSet[DeferredCacheWrite] = weakref.WeakSet()


@atexit.register
def _write_unsaved_caches() -> None:
    # The writer thread may be gone already: write here, in the exiting thread.
    for pending in list(_UNSAVED):
        unsaved, pending.unsaved = pending.unsaved, None
        if unsaved is not None:
            pending.cache.save(*unsaved)


def _identity(cached: agent_pb2.CachedPolicies) -> tuple[str, str, str, str, str]:
    return (cached.server, cached.namespace, cached.app_id, cached.control_plane_id,
            cached.policies.digest)


def _written_at(cached: agent_pb2.CachedPolicies) -> str:
    if not cached.HasField("written_at"):
        return "an unknown time"
    return cached.written_at.ToDatetime(tzinfo=datetime.UTC).isoformat(timespec="seconds")


class _LinkLoop:
    """Connect, sync, reconnect: the protocol, independent of how it is hosted."""

    def __init__(
        self, config: LinkConfig, on_policies: OnPolicies,
        registry: BreakerRegistry | None = None, *, source: PolicySource = PolicySource.NONE,
        budgets: BudgetRegistry | None = None,
    ) -> None:
        self.config = config
        self._on_policies = on_policies
        self._budgets = budgets
        budget_sync = BudgetSync(budgets) if budgets is not None else None
        shares_breakers = registry is not None
        if registry is None and budget_sync is not None:
            # Breakers stay per instance (cluster_breakers=False), but fleet budgets
            # still ride the stream's reports: a flusher over no breakers.
            registry = BreakerRegistry(SYSTEM_CLOCK, EventHooks())
        self.cluster = (
            ClusterSync(registry, config.cluster_config(), config.instance_id, budget_sync,
                        shares_breakers=shares_breakers)
            if registry is not None else None
        )
        if budget_sync is not None:
            budget_sync.on_fleet_sizes = self._fleet_sizes_changed
        #: The server's policies in force, as received (re-cached with new fleet sizes).
        self._policies_pb: policy_pb2.ResolvedPolicies | None = None
        self._cache = PolicyCache(config.resolved_cache_path(), server=config.target,
                                  namespace=config.namespace, app_id=config.app_id)
        self._cache_write = DeferredCacheWrite(self._cache)
        #: The cache read started with the link (on the writer thread).
        self._cache_read: concurrent.futures.Future[agent_pb2.CachedPolicies | None] | None = None
        #: (server, namespace, app-id, control plane id, digest) the cache file is known
        #: to hold, once this link read or wrote it.
        self._on_disk: tuple[str, str, str, str, str] | None = None
        self.digest = ""
        #: Of the policies in force (from the server or the cache); "" when unknown.
        self.control_plane_id = ""
        #: Where the policies in force came from (what the agent held before: static or none).
        self.source = source
        self.connected = False
        # Snapshot counters (fusebox.agent.telemetry reads them; the link loop alone writes).
        self.snapshots_applied = 0
        self.snapshots_nacked = 0
        #: The store revision of the last snapshot applied (0: none from the server yet).
        self.revision = 0
        #: The initial fetch is over: a snapshot was applied, or its deadline passed.
        self.ready = False
        #: Set by the host when it closes the link: no new session is started.
        self.stopping = False
        self.on_synced: Callable[[], None] = lambda: None
        self.on_ready: Callable[[], None] = lambda: None
        self._fetched = asyncio.Event()
        self._warned_unreachable = False
        self._initial_error = ""  # the last connection error during the initial fetch
        self._initial_refusal = ""  # the code the server refused this agent with, meanwhile

    async def run(self) -> None:
        if self.cluster is not None:
            self.cluster.bind(asyncio.get_running_loop())
        # Read the cache now, off the loop: it is at hand if the server does not
        # answer in time, and tells what is on disk when it does.
        self._cache_read = _CACHE_WRITER.submit(self._cache.load)
        deadline = asyncio.create_task(self._initial_fetch(), name="fusebox-initial-fetch")
        try:
            await self._connect_forever()
        finally:
            deadline.cancel()
            await asyncio.wait({deadline})
            self._cache_write.flush()  # the link stops: the last policies go to disk now

    # -- the initial fetch -------------------------------------------------------------

    def _set_ready(self) -> None:
        if not self.ready:
            self.ready = True
            self._fetched.set()
            self.on_ready()

    async def _initial_fetch(self) -> None:
        """At the deadline, if no snapshot was applied: the cache, or nothing. Then ready."""
        timeout = self.config.initial_fetch_timeout
        if timeout > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._fetched.wait(), timeout)
        if self._fetched.is_set():
            return
        try:
            cached, problem = await self._usable_cache()
            if self._fetched.is_set():
                return  # a snapshot landed while the cache was read: it wins
            self._fall_back(cached, problem)
        except Exception:  # a bug here must not keep the agent from starting
            log.exception("control plane %s: the policy cache could not be used",
                          self.config.target)
        self._set_ready()

    async def _usable_cache(self) -> tuple[agent_pb2.CachedPolicies | None, str]:
        """The cache if this link may use it, else None and why not."""
        assert self._cache_read is not None
        try:
            try:
                cached = await asyncio.wait_for(asyncio.wrap_future(self._cache_read),
                                                CACHE_BARRIER_SECONDS)
            except TimeoutError:  # saves queued ahead take too long: read what is there
                cached = self._cache.load()
        except CacheUnreadable as e:
            return None, f"unreadable: {e}"
        if cached is None:
            return None, "none"
        problem = self._cache.problem(cached)
        return (None, problem) if problem is not None else (cached, "")

    def _fall_back(self, cached: agent_pb2.CachedPolicies | None, problem: str) -> None:
        target, timeout = self.config.target, self.config.initial_fetch_timeout
        what = (f"did not answer within {timeout:g}s" if timeout > 0
                else "not waited for (initial_fetch_timeout=0)")
        if self._initial_refusal:  # it answered: said at once, at ERROR, with the details
            what = f"refused this agent ({self._initial_refusal})"
        elif self._initial_error:
            what += f" ({self._initial_error})"
            # This line said it: the next failure is not news (a recovery is, and is logged).
            self._warned_unreachable = True
        level = logging.WARNING if timeout > 0 else logging.INFO
        if cached is not None:
            try:
                policies = resolved_from_proto(cached.policies)
                self._on_policies(policies, PolicySource.CACHE)
            except Exception as e:  # a bad cache must never stop the service
                problem = f"rejected: {e}"
            else:
                self.digest = cached.policies.digest
                self.control_plane_id = cached.control_plane_id
                self.source = PolicySource.CACHE
                self._on_disk = _identity(cached)
                self._seed_fleet_sizes(cached)
                log.log(level, "control plane %s %s; enforcing cached policies written by "
                        "control plane %s at %s (digest %s, %d targets)", target, what,
                        cached.control_plane_id or "(unknown)", _written_at(cached),
                        self.digest, len(policies.targets),
                        extra={"fusebox_event": "policies_from_cache", "control_plane": target,
                               "control_plane_id": cached.control_plane_id,
                               "digest": self.digest})
                return
        meanwhile = ("calls pass through unguarded" if self.source is PolicySource.NONE
                     else f"the {self.source.value} policies stay in force")
        log.log(level, "control plane %s %s; no usable cached policies (%s); %s until the "
                "control plane answers", target, what, problem, meanwhile,
                extra={"fusebox_event": "no_usable_cache", "control_plane": target,
                       "reason": problem})

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
        refused = error.code() in (grpc.StatusCode.UNAUTHENTICATED,
                                   grpc.StatusCode.PERMISSION_DENIED)
        if not refused and not self.ready:
            # Said once, with the initial fetch's outcome (see _fall_back).
            self._initial_error = error.code().name
            log.debug("control plane %s unreachable: %s", self.config.target, error.code())
            return
        self._warned_unreachable = True
        if refused:
            if not self.ready:
                self._initial_refusal = error.code().name
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
        metadata = self.config.call_metadata()
        async with self.config.open_channel() as channel:
            stub = agent_pb2_grpc.AgentServiceStub(channel)
            call = stub.Connect(metadata=metadata)
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
                            interest = self.cluster.session_started(stub, metadata)
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
        digest, control_plane_id = snapshot.policies.digest, snapshot.control_plane_id
        try:
            policies = resolved_from_proto(snapshot.policies)
            self._on_policies(policies, PolicySource.SERVER)
        except (ValueError, KeyError) as e:
            log.warning("policy snapshot %s rejected, keeping the previous policies: %s",
                        digest, e)
            self.snapshots_nacked += 1
            return agent_pb2.ConnectRequest(
                policy_ack=agent_pb2.PolicyAck(digest=digest, accepted=False, error=str(e))
            )
        if (self.source, self.digest, self.control_plane_id) != (
                PolicySource.SERVER, digest, control_plane_id):
            log.info("policies from control plane %s applied (digest %s, %d targets)",
                     self.config.target, digest, len(policies.targets),
                     extra={"fusebox_event": "policies_from_server",
                            "control_plane": self.config.target,
                            "control_plane_id": control_plane_id, "digest": digest})
        self.digest, self.control_plane_id = digest, control_plane_id
        self.source = PolicySource.SERVER
        self._policies_pb = snapshot.policies
        self._keep_on_disk(snapshot.policies, control_plane_id)
        if self.cluster is not None and self.cluster.budgets is not None:
            self.cluster.budgets.snapshot_applied()
        self.snapshots_applied += 1
        self.revision = snapshot.store_revision
        self.on_synced()
        self._set_ready()
        ack = agent_pb2.PolicyAck(digest=digest, accepted=True)
        return agent_pb2.ConnectRequest(policy_ack=ack)

    def _keep_on_disk(self, policies: policy_pb2.ResolvedPolicies, control_plane_id: str) -> None:
        """Cache the applied snapshot unless the file already holds it.

        Later, and off the event loop (an AsyncAgent shares the application's):
        see DeferredCacheWrite. A cache another control plane (or server) wrote
        is overwritten at once: it must not outlive this process's next crash.
        """
        wanted = (self.config.target, self.config.namespace, self.config.app_id,
                  control_plane_id, policies.digest)
        on_disk = self._on_disk or self._read_at_start()
        if on_disk == wanted:
            return
        self._cache_write.offer(policies, control_plane_id, self._fleet_size_entries())
        if on_disk is not None and on_disk[:4] != wanted[:4]:
            log.info("discarding the cached policies written by control plane %s (server %s, "
                     "app %s/%s): control plane %s answered", on_disk[3] or "(unknown)",
                     on_disk[0] or "(unknown)", on_disk[1], on_disk[2],
                     control_plane_id or "(unknown)")
            self._cache_write.flush()
        self._on_disk = wanted

    # -- fleet budgets' sizes in the cache (docs/budgets.md, "The share an agent enforces")

    def _fleet_size_entries(self) -> tuple[agent_pb2.BudgetFleetSize, ...]:
        if self._budgets is None:
            return ()
        sizes = sorted(self._budgets.fleet_sizes().items(), key=lambda item: str(item[0]))
        return tuple(agent_pb2.BudgetFleetSize(key=key.to_proto(), fleet_size=size)
                     for key, size in sizes)

    def _fleet_sizes_changed(self) -> None:
        """A share told a new fleet size: cache it with the server's policies in force."""
        if self.source is PolicySource.SERVER and self._policies_pb is not None:
            self._cache_write.offer(self._policies_pb, self.control_plane_id,
                                    self._fleet_size_entries())

    def _seed_fleet_sizes(self, cached: agent_pb2.CachedPolicies) -> None:
        """The cached policies are in force: so are the fleet sizes cached with them."""
        if self._budgets is None:
            return
        sizes: dict[BudgetKey, int] = {}
        for entry in cached.budget_fleet_sizes:
            try:
                sizes[BudgetKey.from_proto(entry.key)] = entry.fleet_size
            except ValueError:
                continue  # a kind this agent does not know: it holds no such budget
        self._budgets.seed_fleet_sizes(sizes)
        if sizes:
            log.info("budgets enforce 1/fleet size from the cache until the control plane "
                     "answers (%d keys)", len(sizes),
                     extra={"fusebox_event": "budget_fleet_sizes_from_cache"})

    def _read_at_start(self) -> tuple[str, str, str, str, str] | None:
        read = self._cache_read
        if read is None or not read.done() or read.cancelled() or read.exception() is not None:
            return None
        cached = read.result()
        return None if cached is None else _identity(cached)


class _Host(Generic[_Event]):
    """What both hosts share: the link they run, its two events, what they expose of it.

    A host differs only in where the link runs and how it is waited for and
    stopped; ``_event`` is its kind of event (a thread's or a loop's).
    """

    _event: type[_Event]

    def __init__(
        self, config: LinkConfig, on_policies: OnPolicies,
        registry: BreakerRegistry | None = None, *, source: PolicySource = PolicySource.NONE,
        ready: _Event | None = None, budgets: BudgetRegistry | None = None,
    ) -> None:
        self._loop = _LinkLoop(config, on_policies, registry, source=source, budgets=budgets)
        self._synced: _Event = self._event()
        self._ready: _Event = ready if ready is not None else self._event()
        self._loop.on_synced = self._synced.set
        self._loop.on_ready = self._on_ready
        self._task: asyncio.Task[None] | None = None

    def _on_ready(self) -> None:
        self._ready.set()

    @property
    def digest(self) -> str:
        return self._loop.digest

    @property
    def connected(self) -> bool:
        return self._loop.connected

    @property
    def snapshot_counts(self) -> tuple[int, int, int]:
        """Snapshots applied and NACKed by this link, and the revision applied last."""
        loop = self._loop
        return loop.snapshots_applied, loop.snapshots_nacked, loop.revision

    @property
    def source(self) -> PolicySource:
        """Where the policies the link applied came from (what the agent held, before)."""
        return self._loop.source

    @property
    def ready(self) -> bool:
        """The initial fetch is over (a snapshot was applied, or its deadline passed)."""
        return self._loop.ready

    @property
    def cluster(self) -> ClusterSync | None:
        """The cluster-mode side of the link (None without a breaker registry)."""
        return self._loop.cluster


class AsyncPolicyLink(_Host[asyncio.Event]):
    """Hosts the link as a task on the running event loop (AsyncAgent)."""

    _event = asyncio.Event

    async def start(self) -> None:
        """Start the link; return once the initial fetch is over (never blocks the loop)."""
        self._task = task = asyncio.create_task(self._loop.run(), name="fusebox-link")
        ready = asyncio.ensure_future(self._ready.wait())
        try:
            # The link ends its initial fetch by its deadline; it only ends sooner if closed.
            await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()

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


class PolicyLink(_Host[threading.Event]):
    """Hosts the link on a private event loop in a daemon thread (sync Agent)."""

    _event = threading.Event
    _thread: threading.Thread | None = None
    _event_loop: asyncio.AbstractEventLoop | None = None

    def _on_ready(self) -> None:
        self._ready.set()
        self._settled.set()

    def start(self) -> None:
        """Start the link's thread; return once the initial fetch is over."""
        self._settled = threading.Event()  # ready, or the link's thread ended
        self._thread = threading.Thread(target=self._main, name="fusebox-link", daemon=True)
        self._thread.start()
        self._settled.wait()  # bounded by the link's deadline (or its thread's end)

    def _main(self) -> None:
        try:
            loop = asyncio.new_event_loop()
            self._event_loop = loop
            self._task = loop.create_task(self._loop.run())
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._task)
            # grpc.aio may still deliver completion events for the closed channel to
            # this loop; closing it at once makes grpc log "Event loop is closed".
            loop.run_until_complete(asyncio.sleep(LOOP_DRAIN_SECONDS))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
        finally:
            self._settled.set()

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
