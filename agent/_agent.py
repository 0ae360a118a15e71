"""``Agent`` and ``AsyncAgent``: the objects services hold, and their target handles."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import secrets
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Final, Generic, Self, TypeVar

import fusebox.agent.testing as _testing
from fusebox.agent._budgets import BudgetRegistry
from fusebox.agent._cluster_port import ProbeLeaseRequired
from fusebox.agent._errors import BreakerOpenError, PolicyError
from fusebox.agent._executor import (
    CallPlan,
    TimeoutPool,
    call_async,
    call_sync,
    lease_flat_async,
    lease_flat_sync,
    raised_flat,
    rejected_flat,
    settle_flat,
)
from fusebox.agent._live_breaker import Breaker
from fusebox.agent._policy_source import PolicySource
from fusebox.agent._registry import BreakerRegistry, touch_tick
from fusebox.agent.breaker import BreakerState, TripFunction
from fusebox.agent.breaker_key import (
    BreakerKey,
    actor_breaker_key,
    app_breaker_key,
    component_breaker_key,
)
from fusebox.agent.budget import BudgetKind, budget_key
from fusebox.agent.classify import Classifier, default_classifier
from fusebox.agent.clock import SYSTEM_CLOCK, Clock
from fusebox.agent.events import (
    EventHooks,
    FallbackEvent,
    RetryEvent,
    StateChangeEvent,
    StatsCounter,
    TargetStats,
    logger,
    start_telemetry,
)
from fusebox.agent.policy import BreakerScope, Direction, ResolvedPolicies, TargetKind, TargetPolicy

F = TypeVar("F", bound=Callable[..., Any])
E = TypeVar("E")

_HANDLE_CACHE_SIZE: Final = 1024


def _compile_trip(source: str) -> TripFunction:
    # Imported late: agent.trip is a sibling module that may be absent in a
    # partially built tree; only agents with breaker policies need it.
    from fusebox.agent.trip import compile_trip

    return compile_trip(source)


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """Policies in force plus what was validated with them; swapped as one reference."""

    policies: ResolvedPolicies | None
    trips: Mapping[str, TripFunction] = field(default_factory=dict)
    fallbacks: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    source: PolicySource = PolicySource.NONE


@dataclass(frozen=True, slots=True)
class _TargetKey:
    kind: TargetKind
    name: str
    method: str | None = None  # apps
    actor_id: str | None = None  # actors
    direction: Direction | None = None  # components
    component_type: str = ""
    classifier: Classifier | None = None



class _Core:
    """What ``Agent`` and ``AsyncAgent`` share: policies, breakers, hooks, counters."""

    #: Set once the initial fetch is over (a thread's event, or a loop's).
    _ready: threading.Event | asyncio.Event
    _ready_type: type[threading.Event] | type[asyncio.Event]

    def __init__(
        self,
        *,
        app_id: str,
        server: str | None = None,
        namespace: str = "default",
        instance_id: str | None = None,
        policies: ResolvedPolicies | None = None,
        cache_path: str | os.PathLike[str] | None = None,
        clock: Clock | None = None,
        fallbacks: Mapping[str, Callable[..., Any]] | None = None,
        classifier: Classifier | None = None,
        timeout_workers: int = 32,
        report_interval: float = 0.01,
        probe_lease_timeout: float = 0.1,
        cluster_breakers: bool = True,
        initial_fetch_timeout: float = 3.0,
        tls_ca: str | os.PathLike[str] | bytes | None = None,
        tls_cert: str | os.PathLike[str] | bytes | None = None,
        tls_key: str | os.PathLike[str] | bytes | None = None,
        token: str | None = None,
        credentials: Any = None,
        meter_provider: Any = None,
    ) -> None:
        # Transport security of the server link (docs/security.md): ``tls_ca``
        # (PEM path or bytes) verifies the server, ``tls_cert`` + ``tls_key`` add
        # a client certificate (mTLS), or pass prebuilt ``grpc.ChannelCredentials``
        # as ``credentials``; ``token`` is sent as ``authorization: Bearer``.
        if credentials is not None and any(x is not None for x in (tls_ca, tls_cert, tls_key)):
            raise TypeError("give either credentials= or tls_ca/tls_cert/tls_key, not both")
        if (tls_cert is None) != (tls_key is None):
            raise TypeError("tls_cert and tls_key go together: give both for mTLS, or neither")
        if not initial_fetch_timeout >= 0:
            raise ValueError(f"initial_fetch_timeout must be >= 0 seconds, "
                             f"got {initial_fetch_timeout!r}")
        self._tls = (tls_ca, tls_cert, tls_key)
        self._credentials = credentials
        self._token = token
        self.app_id = app_id
        # False: breakers stay per instance even with a server (policies still sync).
        self.cluster_breakers = cluster_breakers
        self.server = server
        self.namespace = namespace
        self.instance_id = instance_id or (
            f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self.cache_path = cache_path
        self.report_interval = report_interval
        self.probe_lease_timeout = probe_lease_timeout
        # Seconds start() waits for the first snapshot before using the disk cache.
        self.initial_fetch_timeout = initial_fetch_timeout
        self._clock = clock or SYSTEM_CLOCK
        self._classifier = classifier or default_classifier
        self._hooks = EventHooks()
        self._registry = BreakerRegistry(self._clock, self._hooks, on_evict=self._republish)
        self._budgets = BudgetRegistry(self._clock, app_id)
        self._timeouts = TimeoutPool(timeout_workers)
        self._fallbacks: dict[str, Callable[..., Any]] = dict(fallbacks or {})
        self._trip_cache: dict[str, TripFunction] = {}
        self._stats: dict[str, StatsCounter] = {}
        self._handles: dict[_TargetKey, _Handle] = {}
        self._app_handles: dict[tuple[str, str | None, Classifier | None], _Handle] = {}
        self._lock = threading.Lock()  # writers only: set_policies, registrations, caches
        self._said_pass_through = False
        self._link: Any = None
        self._snapshot = _Snapshot(None)
        self._ready = self._ready_type()
        # OpenTelemetry metrics and trace events when its API is installed (the otel
        # extra); ``meter_provider``: instead of the global one. Nothing on the call path.
        self._telemetry = start_telemetry(self, meter_provider)
        if policies is not None:
            self.set_policies(policies)

    # -- readiness ----------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Whether the initial fetch is over: use it as a readiness probe.

        True once a snapshot from the server was applied, or once
        ``initial_fetch_timeout`` passed without one (the agent then enforces
        its cached policies or passes calls through, and stays ready: a control
        plane outage never takes a fleet out of service); always True without
        a server (static policies, testing mode). False before ``start()`` and
        after closing.
        """
        return self._ready.is_set() or not self._fetches()

    @property
    def policy_source(self) -> PolicySource:
        """Where the policies in force came from: ``server``, ``cache``, ``static`` or ``none``."""
        return self._snapshot.source

    def _fetches(self) -> bool:
        """Whether this agent has (or will have, once started) an initial fetch."""
        return self._link is not None or self._wants_link()

    def _wants_link(self) -> bool:
        return self.server is not None and not _testing.config.enabled

    def _warn_if_not_started(self) -> None:
        """``wait_ready`` before ``start()`` waits for a start elsewhere (a probe thread
        may do that on purpose); without one it would wait forever, silently."""
        if self._link is None and self._wants_link():
            kind = type(self).__name__
            logger.warning(
                "%s.wait_ready() on an agent that is not started: only start() makes it "
                "ready (%s %s(...) as fb, or fb.start())", kind,
                "async with" if self._ready_type is asyncio.Event else "with", kind)

    # -- policies -------------------------------------------------------------------

    @property
    def policies(self) -> ResolvedPolicies | None:
        """The policies in force (``None``: none received, calls pass through)."""
        return self._snapshot.policies

    def set_policies(self, resolved: ResolvedPolicies) -> None:
        """Validate, then atomically swap in ``resolved`` for the next calls.

        Raises ``PolicyError`` (a ``ValueError``, so the link NACKs) when a
        trip expression does not compile or a fallback names an unregistered
        function; the previous policies then stay in force. Calls in flight
        finish with the policies they started with.
        """
        self._swap_policies(resolved, PolicySource.STATIC)

    def _swap_policies(self, resolved: ResolvedPolicies, source: PolicySource) -> None:
        """``set_policies`` saying where they came from (the server link's callback)."""
        with self._lock:
            self._snapshot = self._validate(resolved, self._fallbacks, source)
            self._registry.retain(resolved.targets)
            self._budgets.retain(resolved.targets)

    def register_fallback(self, name: str, fn: Callable[..., Any]) -> None:
        """Register the callable a ``function`` fallback policy names.

        It receives a ``CallFailure``; on the async path it may be a coroutine function.
        """
        with self._lock:
            self._fallbacks[name] = fn
            snapshot = self._snapshot
            # Plans hold the fallback callables: publish a new snapshot so they re-resolve.
            self._snapshot = _Snapshot(
                snapshot.policies, snapshot.trips, MappingProxyType(dict(self._fallbacks)),
                snapshot.source,
            )

    def _republish(self) -> None:
        # A breaker was evicted from an LRU: a new snapshot identity makes every
        # handle resolve its plan (and so its breakers) again on its next call.
        snapshot = self._snapshot
        self._snapshot = _Snapshot(snapshot.policies, snapshot.trips, snapshot.fallbacks,
                                   snapshot.source)

    def _validate(
        self, resolved: ResolvedPolicies, fallbacks: Mapping[str, Callable[..., Any]],
        source: PolicySource,
    ) -> _Snapshot:
        problems: list[str] = []
        trips: dict[str, TripFunction] = {}
        for target in resolved.targets:
            where = _describe(target)
            breaker = target.circuit_breaker
            if breaker is not None and breaker.trip not in trips:
                try:
                    trips[breaker.trip] = self._compiled(breaker.trip)
                except ValueError as exc:
                    problems.append(
                        f"{where}: circuit breaker {breaker.name!r} trip {breaker.trip!r}: {exc}"
                    )
            fallback = target.fallback
            if fallback is not None and fallback.function is not None and (
                fallback.function not in fallbacks
            ):
                known = ", ".join(sorted(fallbacks)) or "none registered"
                problems.append(
                    f"{where}: fallback {fallback.name!r} names function "
                    f"{fallback.function!r}, which is not registered (known: {known})"
                )
        if problems:
            raise PolicyError(
                "cannot apply policies revision for "
                f"{resolved.namespace}/{resolved.app_id}:\n  " + "\n  ".join(problems)
            )
        return _Snapshot(resolved, MappingProxyType(trips), MappingProxyType(dict(fallbacks)),
                         source)

    def _compiled(self, source: str) -> TripFunction:
        trip = self._trip_cache.get(source)
        if trip is None:
            trip = self._trip_cache[source] = _compile_trip(source)
        return trip

    # -- observability ----------------------------------------------------------------

    def on_retry(self, callback: Callable[[RetryEvent], Any]) -> Callable[[RetryEvent], Any]:
        """Call ``callback(RetryEvent)`` before each retry wait; usable as a decorator."""
        self._hooks.retry = (*self._hooks.retry, callback)
        return callback

    def on_state_change(
        self, callback: Callable[[StateChangeEvent], Any]
    ) -> Callable[[StateChangeEvent], Any]:
        """Call ``callback(StateChangeEvent)`` on every breaker transition."""
        self._hooks.state_change = (*self._hooks.state_change, callback)
        return callback

    def on_fallback(
        self, callback: Callable[[FallbackEvent], Any]
    ) -> Callable[[FallbackEvent], Any]:
        """Call ``callback(FallbackEvent)`` whenever a fallback answers a call."""
        self._hooks.fallback = (*self._hooks.fallback, callback)
        return callback

    def stats(self) -> dict[str, TargetStats]:
        """Counters per target display name (``order-processor:orders``)."""
        with self._lock:
            counters = list(self._stats.items())
        return {name: counter.snapshot() for name, counter in counters}

    def breaker_states(self) -> dict[str, BreakerState]:
        """The state of every live breaker, by display name."""
        return {b.name: b.observe() for b in self._registry.breakers()}

    def breaker(self, name: str) -> Breaker | None:
        """A live breaker by display name (inspection; the cluster seam)."""
        return self._registry.find(name)

    # -- plans ------------------------------------------------------------------------

    def _handle(self, key: _TargetKey, factory: Callable[[_Core, _TargetKey], H]) -> H:
        handle = self._handles.get(key)
        if handle is None:
            with self._lock:
                if len(self._handles) >= _HANDLE_CACHE_SIZE:
                    self._handles.pop(next(iter(self._handles)))
                handle = self._handles.setdefault(key, factory(self, key))
        return handle  # type: ignore[return-value]

    def _plan(self, key: _TargetKey, snapshot: _Snapshot) -> CallPlan | None:
        policies = snapshot.policies
        if policies is None:
            if not self._said_pass_through:
                self._said_pass_through = True
                logger.info(
                    "No resiliency policies for app %s (%s): calls pass through unguarded",
                    self.app_id, self._pass_through_reason(),
                    extra={"fusebox_event": "pass_through", "app_id": self.app_id},
                )
            return None
        target = policies.lookup(key.kind, key.name, key.direction, key.component_type)
        display, operation = _names(key)
        if target is None or not (
            target.timeout or target.retry or target.circuit_breaker or target.fallback
            or target.rate_limit or target.retry_budget
        ):
            return None
        breaker: Breaker | None = None
        bounded = False
        if target.circuit_breaker is not None:
            trip = snapshot.trips[target.circuit_breaker.trip]
            name, bounded, wire_key = _breaker_name(key, target)
            breaker = self._registry.get(target, name, trip, bounded=bounded, key=wire_key)
        fallback_fn = None
        if target.fallback is not None and target.fallback.function is not None:
            fallback_fn = snapshot.fallbacks[target.fallback.function]
        budgets, app_id = self._budgets, self.app_id
        rate_limit = retry_budget = None
        if target.rate_limit is not None:
            rate_limit = budgets.rate_limiter(
                budget_key(target, BudgetKind.RATE_LIMIT, app_id), target.rate_limit)
        if target.retry_budget is not None and target.retry is not None:
            # Without a retry policy nothing is ever retried: no first attempt to count.
            retry_budget = budgets.retry_budget(
                budget_key(target, BudgetKind.RETRY_BUDGET, app_id), target.retry_budget)
        return CallPlan(
            target=display,
            operation=operation,
            timeout=target.timeout.duration if target.timeout else 0.0,
            retry=target.retry,
            breaker=breaker,
            fallback=target.fallback,
            fallback_fn=fallback_fn,
            classifier=key.classifier or self._classifier,
            stats=self._counter(display),
            hooks=self._hooks,
            clock=self._clock,
            timeouts=self._timeouts,
            touch=bounded,
            rate_limit=rate_limit,
            retry_budget=retry_budget,
        )

    def _pass_through_reason(self) -> str:
        """Why no policies are in force, as things are (never a guess about the server)."""
        if self.server is None:
            return "no server and no static policies"
        if self._link is None:
            return ("testing mode: no server link" if _testing.config.enabled
                    else "the agent is not started")
        if not self._ready.is_set():
            return f"waiting for the first policies from control plane {self.server}"
        return f"no policies from control plane {self.server} yet and no usable cached policies"

    def _counter(self, name: str) -> StatsCounter:
        counter = self._stats.get(name)
        if counter is None:
            with self._lock:
                counter = self._stats.setdefault(name, StatsCounter())
        return counter

    def _closed(self, link: Any) -> None:
        """After closing ``link`` (None: there was none): stop the timeout workers."""
        if link is not None:
            self._ready.clear()
        self._timeouts.shutdown()

    @staticmethod
    def _key(
        *,
        app: str | None,
        method: str | None,
        actor: str | None,
        actor_id: str | None,
        component: str | None,
        direction: str,
        component_type: str,
        classifier: Classifier | None,
    ) -> _TargetKey:
        chosen = [x for x in (app, actor, component) if x is not None]
        if len(chosen) != 1:
            raise TypeError("protect() needs exactly one of app=, actor= or component=")
        if app is not None:
            return _TargetKey(TargetKind.APP, app, method=method or None, classifier=classifier)
        if actor is not None:
            return _TargetKey(TargetKind.ACTOR, actor, actor_id=actor_id, classifier=classifier)
        assert component is not None
        return _TargetKey(
            TargetKind.COMPONENT, component, direction=Direction(direction),
            component_type=component_type, classifier=classifier,
        )


def _describe(target: TargetPolicy) -> str:
    name = "default" if target.is_default else target.name
    direction = f" ({target.direction.value})" if target.direction else ""
    return f"targets.{target.kind.value}s.{name}{direction}"


def _names(key: _TargetKey) -> tuple[str, str]:
    """(display name, operation name) as Dapr prints them."""
    if key.kind is TargetKind.APP:
        display = f"{key.name}:{key.method}" if key.method else key.name
        return display, f"endpoint[{key.name}, {display}]"
    if key.kind is TargetKind.ACTOR:
        if key.actor_id is None:
            return key.name, f"actor[{key.name}]"
        return f"{key.name}-{key.actor_id}", f"actor[{key.name}, {key.actor_id}]"
    direction = key.direction.value if key.direction else "outbound"
    return key.name, f"component[{key.name}] {direction}"


def _breaker_name(key: _TargetKey, target: TargetPolicy) -> tuple[str, bool, BreakerKey]:
    """The one breaker that guards a call: (name, LRU-bounded, cluster key).

    Actors as daprd's ``Resiliency.ActorPreLockPolicy`` (pkg/resiliency/resiliency.go)
    picks them: scope ``type`` shares the type's breaker (``cart``); any other
    scope, ``both`` included, gets the actor's own (``cart-42``). daprd never
    combines two breakers: ``both`` is parsed but keyed exactly as ``id``.
    """
    if key.kind is TargetKind.APP:
        return _names(key)[0], True, app_breaker_key(target, key.name, key.method)
    if key.kind is TargetKind.COMPONENT:
        return key.name, False, component_breaker_key(target, key.name, key.direction)
    if key.actor_id is None or target.circuit_breaker_scope is BreakerScope.TYPE:
        return key.name, False, actor_breaker_key(target, key.name, None)
    return (f"{key.name}-{key.actor_id}", True,
            actor_breaker_key(target, key.name, key.actor_id))


class _Handle:
    """A target of calls; caches its plan for the policy snapshot it last saw.

    One way in per flavour, whatever the agent: ``_call_sync`` (blocking; also
    ``_call``, its ``fn, *args`` form, which is ``Target.call`` and
    ``AsyncTarget.call_sync``) and ``_acall`` (``AsyncTarget.call`` and
    ``Target.acall``). Each runs a flat plan (one breaker and nothing else)
    inline and hands any other plan to the executor; see
    ``fusebox.agent._executor`` for why, and for where the logic lives.
    """

    __slots__ = ("_core", "_key", "_plan", "_snapshot")

    def __init__(self, core: _Core, key: _TargetKey) -> None:
        self._core = core
        self._key = key
        self._snapshot: _Snapshot | None = None
        self._plan: CallPlan | None = None  # None: no policy applies, pass through

    @property
    def name(self) -> str:
        """The display name: ``order-processor:orders``."""
        return _names(self._key)[0]

    def _refresh(self) -> CallPlan | None:
        snapshot = self._core._snapshot
        self._plan = self._core._plan(self._key, snapshot)
        self._snapshot = snapshot
        return self._plan

    def _call(self, fn: Callable[..., E], /, *args: Any, **kwargs: Any) -> E:
        """Call ``fn(*args, **kwargs)`` under the target's policies, in this thread."""
        return self._call_sync(fn, args, kwargs)  # type: ignore[no-any-return]

    def _call_sync(self, fn: Callable[..., Any], args: tuple[Any, ...],
                   kwargs: dict[str, Any]) -> Any:
        # @protect's wrappers call this form: going through ``_call`` would re-pack
        # *args (a C-level call, a tuple and a dict: measured +20% per call).
        plan = self._plan
        if self._snapshot is not self._core._snapshot:
            plan = self._refresh()
        if plan is None or not _testing.config.policies:
            return fn(*args, **kwargs)
        if not plan.breaker_only:
            return call_sync(plan, fn, args, kwargs)
        breaker: Breaker = plan.breaker  # type: ignore[assignment]  # set when breaker_only
        if plan.touch:
            breaker.last_used = touch_tick()
        try:
            token = breaker.acquire()
        except ProbeLeaseRequired:
            token = lease_flat_sync(plan)  # blocks at most the lease deadline
        except BreakerOpenError:
            rejected_flat(plan)
            raise
        try:
            result = fn(*args, **kwargs)
        except BaseException as error:
            raised_flat(plan, token, error)
        # settle_flat, inlined: a frame less on the hot path.
        classifier = plan.classifier
        success = classifier is default_classifier or classifier(result, None).success
        breaker.release(token, success)
        (plan.succeeded if success else plan.failed)()
        return result

    async def _acall(self, fn: Callable[..., Awaitable[E]], /, *args: Any, **kwargs: Any) -> E:
        """Await ``fn(*args, **kwargs)`` under the target's policies."""
        plan = self._plan
        if self._snapshot is not self._core._snapshot:
            plan = self._refresh()
        if plan is None or not _testing.config.policies:
            return await fn(*args, **kwargs)
        if not plan.breaker_only:
            return await call_async(plan, fn, args, kwargs)  # type: ignore[no-any-return]
        if plan.touch:
            plan.breaker.last_used = touch_tick()  # type: ignore[union-attr]
        try:
            token = plan.breaker.acquire()  # type: ignore[union-attr]
        except ProbeLeaseRequired:
            token = await lease_flat_async(plan)
        except BreakerOpenError:
            rejected_flat(plan)
            raise
        try:
            result = await fn(*args, **kwargs)
        except BaseException as error:
            raised_flat(plan, token, error)
        return settle_flat(plan, token, result)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


H = TypeVar("H", bound=_Handle)


class Target(_Handle):
    """A call target of a sync ``Agent``: ``fb.app("order-processor", method="orders")``.

    ``call(fn, *args, **kwargs)`` calls ``fn`` under the target's policies;
    ``acall`` awaits a coroutine function under them.
    """

    __slots__ = ()

    call = _Handle._call
    acall = _Handle._acall


class AsyncTarget(_Handle):
    """A call target of an ``AsyncAgent``: ``await target.call(coro_fn, ...)``.

    ``call_sync(fn, *args, **kwargs)`` calls a blocking ``fn`` under the
    target's policies (it blocks the caller).
    """

    __slots__ = ()

    call = _Handle._acall
    call_sync = _Handle._call


class _AgentBase(_Core, Generic[H]):
    """What ``Agent`` and ``AsyncAgent`` share beyond ``_Core``: handles, ``protect``, the link.

    ``H`` is the handle type the agent hands out (``Target`` or ``AsyncTarget``).
    """

    _handle_type: type[H]

    @classmethod
    def from_env(cls, *, environ: Mapping[str, str] | None = None, **overrides: Any) -> Self:
        """An agent configured by the ``FUSEBOX_*`` variables (docs/deploy.md).

        ``FUSEBOX_APP_ID`` (required), ``FUSEBOX_SERVER`` (default
        ``127.0.0.1:50051``), ``FUSEBOX_NAMESPACE``, ``FUSEBOX_INSTANCE_ID``,
        ``FUSEBOX_TOKEN`` or ``FUSEBOX_TOKEN_FILE``, ``FUSEBOX_TLS_CA``,
        ``FUSEBOX_TLS_CERT`` + ``FUSEBOX_TLS_KEY``, ``FUSEBOX_INITIAL_FETCH_TIMEOUT``;
        ``FUSEBOX_CACHE_DIR`` as for every agent. Keyword ``overrides`` win over
        the environment (their variables are not read) and take any other
        constructor keyword (``fallbacks=``, ``classifier=``, ...). A bad value
        raises ``fusebox.agent.environment.EnvironmentConfigError`` (a
        ``ValueError``) naming the variable and what it accepts.

        >>> with Agent.from_env(fallbacks={"cached": cached_orders}) as fb:  # doctest: +SKIP
        ...     fb.app("order-processor", method="orders").call(post_order, order)
        """
        from fusebox.agent.environment import agent_keywords

        return cls(**agent_keywords(environ, **overrides))

    def app(self, app_id: str, *, method: str | None = None,
            classifier: Classifier | None = None) -> H:
        """The handle for service invocation of ``app_id`` (optionally one ``method``)."""
        handle = self._app_handles.get((app_id, method, classifier))
        if handle is None:  # the dict above is a shortcut: app() is often called per call
            key = _TargetKey(TargetKind.APP, app_id, method=method or None, classifier=classifier)
            handle = self._app_handles[(app_id, method, classifier)] = self._handle(
                key, self._handle_type
            )
            if len(self._app_handles) > _HANDLE_CACHE_SIZE:
                self._app_handles.clear()
        return handle  # type: ignore[return-value]

    def actor(self, type: str, id: str | None = None, *,
              classifier: Classifier | None = None) -> H:
        """The handle for calls to actors of ``type`` (and one ``id``)."""
        key = _TargetKey(TargetKind.ACTOR, type, actor_id=id, classifier=classifier)
        return self._handle(key, self._handle_type)

    def component(self, name: str, direction: str = "outbound", *, component_type: str = "",
                  classifier: Classifier | None = None) -> H:
        """The handle for operations on component ``name`` (``outbound`` or ``inbound``)."""
        key = _TargetKey(TargetKind.COMPONENT, name, direction=Direction(direction),
                         component_type=component_type, classifier=classifier)
        return self._handle(key, self._handle_type)

    def protect(
        self,
        *,
        app: str | None = None,
        method: str | None = None,
        actor: str | None = None,
        actor_id: str | None = None,
        component: str | None = None,
        direction: str = "outbound",
        component_type: str = "",
        classifier: Classifier | None = None,
    ) -> Callable[[F], F]:
        """Decorate a sync or async callable so every call runs under a target's policies.

        >>> @fb.protect(app="order-processor", method="orders")  # doctest: +SKIP
        ... def post_order(order): ...
        """
        key = self._key(app=app, method=method, actor=actor, actor_id=actor_id,
                        component=component, direction=direction,
                        component_type=component_type, classifier=classifier)

        def decorate(fn: F) -> F:
            handle = self._handle(key, self._handle_type)
            if inspect.iscoroutinefunction(fn):
                acall = handle._acall

                @functools.wraps(fn)
                async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                    return await acall(fn, *args, **kwargs)

                return guarded_async  # type: ignore[return-value]

            call = handle._call_sync

            @functools.wraps(fn)
            def guarded(*args: Any, **kwargs: Any) -> Any:
                return call(fn, args, kwargs)

            return guarded  # type: ignore[return-value]

        return decorate

    def _new_link(self, *, on_loop: bool) -> Any:
        """The server link to start, kept as ``_link``; None when none is wanted or one runs.

        ``on_loop``: a task on the running event loop (``AsyncPolicyLink``),
        else a private loop in a thread (``PolicyLink``).
        """
        if self._link is not None or not self._wants_link():
            return None
        from fusebox.agent import _link
        from fusebox.agent.tls import channel_credentials

        assert self.server is not None
        credentials = self._credentials
        if credentials is None and any(x is not None for x in self._tls):
            credentials = channel_credentials(*self._tls)
        config = _link.LinkConfig(
            target=self.server, namespace=self.namespace, app_id=self.app_id,
            instance_id=self.instance_id, cache_path=self.cache_path,
            report_interval=self.report_interval, probe_lease_timeout=self.probe_lease_timeout,
            initial_fetch_timeout=self.initial_fetch_timeout,
            credentials=credentials, token=self._token,
        )
        host = _link.AsyncPolicyLink if on_loop else _link.PolicyLink
        self._link = host(
            config, on_policies=self._swap_policies,
            # The link shares breaker state with the cluster only when given the registry.
            registry=self._registry if self.cluster_breakers else None,
            source=self.policy_source, ready=self._ready,  # type: ignore[arg-type]
            budgets=self._budgets,
        )
        return self._link

    def _take_link(self) -> Any:
        """The running link (None: none), forgotten: the caller closes it."""
        link, self._link = self._link, None
        return link


class Agent(_AgentBase[Target]):
    """The sync agent. Use as a context manager, or call ``start()`` / ``close()``.

    >>> with Agent(app_id="checkout", policies=resolved) as fb:  # doctest: +SKIP
    ...     r = fb.app("order-processor", method="orders").call(post_order, order)

    With ``server`` set, a background thread keeps the policies in sync with
    the control plane, and ``start()`` waits (at most ``initial_fetch_timeout``
    seconds) for the first snapshot. Without a server, static ``policies``
    apply; with neither, calls pass through unguarded.
    """

    _handle_type = Target
    _ready_type = threading.Event
    _ready: threading.Event

    def start(self) -> Agent:
        """Start syncing policies from the server (no-op without one, or in testing mode).

        Blocks until the first snapshot from the server is applied, or for
        ``initial_fetch_timeout`` seconds; then, without a snapshot, the cached
        policies written for this server, namespace and app-id apply (if any).
        """
        if (link := self._new_link(on_loop=False)) is not None:
            try:
                link.start()
            except BaseException:  # interrupted while waiting: leave nothing running
                self._take_link()
                link.close()
                raise
        return self

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until ``ready`` (at most ``timeout`` seconds); whether it is.

        Only ``start()`` (perhaps in another thread or task) makes it ready:
        waiting on an agent not started logs a warning.
        """
        self._warn_if_not_started()
        return not self._fetches() or self._ready.wait(timeout)

    def close(self) -> None:
        """Stop the server link and the timeout workers."""
        if (link := self._take_link()) is not None:
            link.close()
        self._closed(link)

    def __enter__(self) -> Agent:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncAgent(_AgentBase[AsyncTarget]):
    """The asyncio agent: ``async with AsyncAgent(...) as fb``, or ``start()`` / ``aclose()``.

    ``await start()`` waits like ``Agent.start()`` for the first snapshot, without
    blocking the event loop.
    """

    _handle_type = AsyncTarget
    _ready_type = asyncio.Event
    _ready: asyncio.Event

    async def start(self) -> AsyncAgent:
        """Start syncing policies from the server (no-op without one, or in testing mode).

        Returns once the first snapshot from the server is applied, or after
        ``initial_fetch_timeout`` seconds (then the matching cache, if any).
        """
        if (link := self._new_link(on_loop=True)) is not None:
            try:
                await link.start()
            except BaseException:  # cancelled while waiting: leave nothing running
                self._take_link()
                await link.aclose()
                raise
        return self

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait until ``ready`` (at most ``timeout`` seconds); whether it is.

        Only ``start()`` (perhaps in another thread or task) makes it ready:
        waiting on an agent not started logs a warning.
        """
        self._warn_if_not_started()
        if not self._fetches():
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    async def aclose(self) -> None:
        """Stop the server link and the timeout workers."""
        if (link := self._take_link()) is not None:
            await link.aclose()
        self._closed(link)

    async def __aenter__(self) -> AsyncAgent:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()
