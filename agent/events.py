"""What the agent tells the world: Dapr-worded log lines, event hooks and counters.

With the OpenTelemetry API installed (the ``otel`` extra), ``start_telemetry``
also exports the counters as metrics and puts retried attempts on the caller's
trace (``fusebox.agent.telemetry``, imported only then).
"""

from __future__ import annotations

import enum
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from fusebox.agent.breaker import BreakerState, TransitionCause
from fusebox.agent.classify import Outcome

logger = logging.getLogger("fusebox.agent")


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """A failed attempt on ``target`` will be retried after ``delay`` seconds."""

    target: str
    operation: str
    attempt: int  # the attempt about to be made (2 for the first retry)
    delay: float
    error: BaseException | None
    outcome: Outcome


class ChangeOrigin(enum.Enum):
    """Whose decision changed a breaker's effective state."""

    LOCAL = "local"  # this instance's own outcomes (Dapr's per-instance breaker)
    FLEET = "fleet"  # the fleet's state pushed by the control plane
    OPERATOR = "operator"  # an override set, changed or cleared, or a reset


@dataclass(frozen=True, slots=True)
class StateChangeEvent:
    """Circuit breaker ``breaker`` changed its effective state.

    The effective state is the stricter of the instance's own breaker and the
    fleet's (or what an operator override says). ``generation`` is the
    generation of the side that changed (``origin``): the instance's own for
    ``LOCAL``, the fleet's for ``FLEET`` and ``OPERATOR``.
    """

    breaker: str
    from_state: BreakerState
    to_state: BreakerState
    generation: int
    cause: TransitionCause
    origin: ChangeOrigin = ChangeOrigin.LOCAL


@dataclass(frozen=True, slots=True)
class FallbackEvent:
    """The fallback ``policy`` answered a failed call on ``target``."""

    target: str
    policy: str
    error: BaseException | None
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class TargetStats:
    """Counters of one target since the agent started (``Agent.stats()``).

    ``calls`` = ``successes`` + ``failures`` (fallbacks count under
    ``failures`` and again under ``fallbacks``); ``retries``, ``timeouts`` and
    ``rejected`` (by the breaker) count attempts. Fleet budgets
    (docs/budgets.md): ``rate_limited`` counts attempts the rate limit refused
    (a refused first attempt ends the call, a refused retry is skipped);
    ``retries_skipped`` counts retries the retry budget refused.
    """

    calls: int = 0
    successes: int = 0
    failures: int = 0
    retries: int = 0
    timeouts: int = 0
    rejected: int = 0
    fallbacks: int = 0
    rate_limited: int = 0
    retries_skipped: int = 0


class StatsCounter:
    """Lock-free counters behind ``TargetStats``.

    Each counter is an ``itertools.count``: ``next()`` on it is one atomic C
    call, cheaper than taking a lock on every guarded call. ``calls`` is
    derived (successes + failures).
    """

    __slots__ = ("_counters", "failure", "fallback", "rate_limited", "rejected", "retry",
                 "retry_skipped", "success", "timeout")

    def __init__(self) -> None:
        self._counters = tuple(itertools.count() for _ in range(8))
        (self.success, self.failure, self.retry, self.timeout, self.rejected,
         self.fallback, self.rate_limited, self.retry_skipped) = (
            c.__next__ for c in self._counters
        )

    def snapshot(self) -> TargetStats:
        # repr(count(7)) == "count(7)": the only public way to read a count.
        s, f, r, t, rej, fb, limited, skipped = (int(repr(c)[6:-1]) for c in self._counters)
        return TargetStats(s + f, s, f, r, t, rej, fb, limited, skipped)


class EventHooks:
    """Callbacks registered with ``on_retry`` / ``on_state_change`` / ``on_fallback``.

    A callback that raises is logged and otherwise ignored: observers never
    break the call they observe.
    """

    __slots__ = ("fallback", "retry", "state_change")

    def __init__(self) -> None:
        self.retry: tuple[Callable[[RetryEvent], Any], ...] = ()
        self.state_change: tuple[Callable[[StateChangeEvent], Any], ...] = ()
        self.fallback: tuple[Callable[[FallbackEvent], Any], ...] = ()

    # The log lines are built only when someone listens: their fields cost more
    # than the callbacks on a fleet-wide trip or a burst of retries.

    def emit_retry(self, event: RetryEvent) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "Error processing operation %s. Retrying in %s (attempt %d)...",
                event.operation, format_go_duration(event.delay), event.attempt,
                extra={"fusebox_event": "retry", "target": event.target,
                       "attempt": event.attempt, "delay": event.delay},
            )
        _call_all(self.retry, event)

    def emit_state_change(self, event: StateChangeEvent) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                'Circuit breaker "%s" changed state from %s to %s',
                event.breaker, event.from_state, event.to_state,
                extra={"fusebox_event": "breaker_state", "breaker": event.breaker,
                       "from_state": str(event.from_state), "to_state": str(event.to_state),
                       "generation": event.generation, "cause": event.cause.value,
                       "origin": event.origin.value},
            )
        _call_all(self.state_change, event)

    def emit_fallback(self, event: FallbackEvent) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                'Fallback "%s" applied to %s', event.policy, event.target,
                extra={"fusebox_event": "fallback", "target": event.target,
                       "policy": event.policy},
            )
        _call_all(self.fallback, event)


def _call_all(callbacks: tuple[Callable[[Any], Any], ...], event: object) -> None:
    for callback in callbacks:
        try:
            callback(event)
        except Exception:
            logger.exception("event hook %r failed on %r", callback, event)


def format_go_duration(seconds: float) -> str:
    """Render seconds as Go's ``time.Duration.String`` does (``5s``, ``500ms``, ``1m30s``).

    >>> format_go_duration(1.5), format_go_duration(0.5), format_go_duration(90)
    ('1.5s', '500ms', '1m30s')
    """
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _decimal(ns, size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _decimal(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    if minutes:
        return f"{sign}{minutes}m{text}"
    return sign + text


def _decimal(value: int, unit: int) -> str:
    whole, frac = divmod(value, unit)
    if not frac:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{str(frac).rjust(digits, '0').rstrip('0')}"


#: ``fusebox.agent.telemetry`` once looked for: the module, or None without the OTel API.
_telemetry_module: ModuleType | None = None
_telemetry_looked_for = False


def start_telemetry(agent: Any, meter_provider: Any = None) -> Any:
    """Register ``agent`` with ``fusebox.agent.telemetry``; None without the OTel API.

    The module is looked for once per process: an agent made without the extra
    pays one failed import, the next ones nothing. ``meter_provider`` without
    the API installed is an error that names the extra.
    """
    global _telemetry_module, _telemetry_looked_for
    if not _telemetry_looked_for:
        try:
            import fusebox.agent.telemetry as telemetry
        except ModuleNotFoundError as missing:  # opentelemetry-api is the optional extra
            if not (missing.name or "").startswith("opentelemetry"):
                raise
        else:
            _telemetry_module = telemetry
        _telemetry_looked_for = True
    if _telemetry_module is None:
        if meter_provider is not None:
            from fusebox.agent.extras import missing_extra

            raise missing_extra("opentelemetry-api", "otel", "meter_provider=")
        return None
    return _telemetry_module.register(agent, meter_provider)
