"""What a breaker following the cluster needs from the link (``fusebox.agent._cluster``).

Kept apart from both so that ``fusebox.agent._registry`` (the call path) and
``fusebox.agent._cluster`` (the link side) depend on this small contract, not on
each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from fusebox.agent.breaker import BreakerState
from fusebox.agent.breaker_key import BreakerKey

if TYPE_CHECKING:
    from fusebox.agent._live_breaker import Breaker


@dataclass(frozen=True, slots=True)
class LeaseAnswer:
    """The server's answer to ``AcquireProbeLease``."""

    granted: bool
    lease_id: str = ""
    state: BreakerState | None = None  # the cluster state, when not granted
    generation: int = 0


class ProbeLeaseRequired(Exception):
    """Raised by ``Breaker.acquire`` in cluster half-open: the call needs a probe lease.

    The executor catches it and calls ``acquire_probe`` (sync, blocking with
    the lease deadline) or ``acquire_probe_async``; callers of the public API
    never see it.
    """

    def __init__(self, breaker: Breaker) -> None:
        super().__init__(breaker.name)
        self.breaker = breaker


class ClusterPort(Protocol):
    """The link side, as breakers see it."""

    following: bool

    def wake(self) -> None:
        """Flush reports now instead of at the next tick (thread-safe, cheap, coalesced)."""

    def report_probe(self, key: BreakerKey, lease_id: str, generation: int,
                     success: bool) -> None:
        """Queue a probe's outcome for the next (immediate) flush."""

    def lease_sync(self, key: BreakerKey, generation: int) -> LeaseAnswer | None:
        """Ask for a probe lease, blocking at most the lease deadline; None: decide locally."""

    async def lease_async(self, key: BreakerKey, generation: int) -> LeaseAnswer | None:
        """``lease_sync`` for coroutines."""

    def breaker_created(self, breaker: Breaker) -> None:
        """A breaker was created (called under the registry lock)."""

    def breaker_dropped(self, breaker: Breaker) -> None:
        """A breaker was evicted or dropped by a policy swap (under the registry lock)."""
