"""Fleet budgets, link side: usage up, shares down, leases (docs/budgets.md, phase 2).

``BudgetSync`` lives on the policy link's event loop, beside ``ClusterSync``
(which owns the Connect stream's flusher and hands it what is due). It never
runs on a call path: calls only bump the counters the enforcers already keep
(``RateLimiter.admitted``/``refused`` under the bucket's own lock,
``RetryBudget``'s first attempts lock-free), and this module reads their
growth when the flusher looks.

Usage, per key the policies in force bind (at most one ``BudgetUsage`` per key
per report, ``interval`` since the key's previous entry on this stream):

* a key with activity gets an entry once ``usage_interval`` passed since its
  previous one (the server refreshes shares every 250 ms; reporting every
  10 ms flush would only multiply entries);
* a key whose activity stopped gets one zero entry at once (its demand fell
  to zero, so the server gives its share to others at its next refresh), then
  a zero entry every ``idle_usage_interval`` while it stays idle, so its
  entry in the server's table never ages out while the agent holds the key.

Shares (``BudgetShares``): each share for a key the policies bind is applied
at once (``BudgetRegistry.apply_share``: in place, never adding tokens),
acked on the next report (``BudgetShareAck``, the flusher is woken for it)
and leased from receipt: a timer on the link's loop returns the key to the
fallback share, ``1 / fleet size`` last told, when the lease ends without a
newer share. A share with no lease holds while its stream is up. A share
for a key the policies do not bind is ignored (counted, logged at debug);
one that arrives before the session's first snapshot waits for it. Across a
disconnect, leased shares are kept until their leases end; acks not sent are
dropped (the next server pushes its own shares).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from fusebox.agent._budgets import BudgetRegistry, Enforcer
from fusebox.agent._rate_limiter import RateLimiter
from fusebox.agent.budget import BudgetKey, BudgetShare, fallback_share
from fusebox.v1 import agent_pb2

log = logging.getLogger("fusebox.agent.budgets")

#: Seconds between two usage entries of a busy key.
USAGE_INTERVAL = 0.1
#: Seconds between two zero entries of an idle key.
IDLE_USAGE_INTERVAL = 1.0
#: The longest interval one entry may say (the server's bound; only a stalled link gets near).
MAX_INTERVAL = 3600.0

_ROUNDING = 1e-9  # seconds of float rounding forgiven when an entry is due

#: (admitted, refused, first attempts), cumulative, of one enforcer.
Totals = tuple[int, int, int]


def totals(enforcer: Enforcer) -> Totals:
    """What ``enforcer`` counted since it was made, as ``BudgetUsage`` counts it."""
    if isinstance(enforcer, RateLimiter):
        return enforcer.admitted, enforcer.refused, 0
    first, made, skipped = enforcer.totals()
    return made, skipped, first


@dataclass(slots=True)
class _Reported:
    """A key's last usage entry: the enforcer's totals then, and when."""

    enforcer: Enforcer | None
    totals: Totals
    at: float
    active: bool  # the last entry had activity (the next idle one is sent at once)


class BudgetSync:
    """Usage reports and pushed shares of one agent's budgets (see the module doc)."""

    def __init__(self, registry: BudgetRegistry, *, usage_interval: float = USAGE_INTERVAL,
                 idle_usage_interval: float = IDLE_USAGE_INTERVAL) -> None:
        self._registry = registry
        self._now = registry.now
        self.usage_interval = usage_interval
        self.idle_usage_interval = max(usage_interval, idle_usage_interval)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reported: dict[BudgetKey, _Reported] = {}
        self._session_start = self._now()
        self._synced = False  # the session's first snapshot is applied
        self._early: list[BudgetShare] = []  # shares received before it
        #: The newest generation applied per key on this stream (older ones are stale).
        self._generations: dict[BudgetKey, int] = {}
        self._acks: dict[BudgetKey, int] = {}
        self._leases: dict[BudgetKey, asyncio.TimerHandle] = {}
        #: Shares ignored: for keys the policies do not bind, or unreadable.
        self.ignored = 0
        #: Called when a fleet size changed (the link writes it to the disk cache).
        self.on_fleet_sizes: Callable[[], None] = lambda: None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """The loop lease timers run on (the link's)."""
        self._loop = loop

    # -- the session -----------------------------------------------------------------

    def session_started(self) -> None:
        """A stream is up: usage intervals start now, every generation is news.

        What the enforcers counted before belongs to no entry (the new server
        has none to compare it with).
        """
        now = self._session_start = self._now()
        self._reported = {key: _Reported(enforcer, totals(enforcer), now, False)
                          for key, enforcer in self._registry.budgets().items()}
        self._generations.clear()
        self._acks.clear()

    def snapshot_applied(self) -> None:
        """Policies from the server were swapped in: shares that came before them apply."""
        self._synced = True
        early, self._early = self._early, []
        for share in early:
            self._take(share)

    def session_ended(self, *, closing: bool = False) -> None:
        """The stream is gone: leased shares run on until their leases end.

        Shares without a lease, and every share when the agent itself is
        closing (no link will ever renew them), go back to the fallback share now.
        """
        self._synced = False
        self._early.clear()
        self._acks.clear()
        self._generations.clear()
        registry = self._registry
        for key in list(registry.bound()):
            pushed = registry.pushed(key)
            if pushed is not None and (closing or key not in self._leases):
                self._expire(key, pushed.generation, "the stream that carried it ended")
        if closing:
            for timer in self._leases.values():
                timer.cancel()
            self._leases.clear()

    # -- shares ----------------------------------------------------------------------

    def on_shares(self, shares: agent_pb2.BudgetShares) -> bool:
        """Apply pushed shares; whether acks are now due (wake the flusher)."""
        for message in shares.shares:
            try:
                share = BudgetShare.from_proto(message)
            except ValueError as e:
                self.ignored += 1
                log.debug("budget share ignored: %s", e)
                continue
            self._take(share)
        return bool(self._acks)

    def _take(self, share: BudgetShare) -> None:
        key, registry = share.key, self._registry
        if not registry.holds(key):
            if not self._synced:
                self._early.append(share)  # the snapshot binding it is on its way
                return
            self.ignored += 1
            log.debug("budget share for %s ignored: no policy in force binds it here "
                      "(%d ignored so far)", key, self.ignored)
            return
        newest = self._generations.get(key)
        if newest is not None and share.generation < newest:
            self._acks[key] = newest  # stale: this agent enforces a newer one
            return
        size_before = registry.fleet_sizes().get(key)
        registry.apply_share(share)
        self._generations[key] = share.generation
        self._acks[key] = share.generation
        timer = self._leases.pop(key, None)
        if timer is not None:
            timer.cancel()
        if share.lease > 0 and self._loop is not None:
            self._leases[key] = self._loop.call_later(
                share.lease, self._lease_ended, key, share.generation)
        if size_before != max(1, share.fleet_size):
            self.on_fleet_sizes()

    def _lease_ended(self, key: BudgetKey, generation: int) -> None:
        self._leases.pop(key, None)
        self._expire(key, generation, "its lease ended without renewal")

    def _expire(self, key: BudgetKey, generation: int, why: str) -> None:
        if self._registry.expire_share(key, generation):
            size = self._registry.fleet_sizes().get(key, 1)
            log.info("budget %s: pushed share %s; enforcing the fallback share 1/%d = %.4g",
                     key, why, size, fallback_share(size),
                     extra={"fusebox_event": "budget_share_expired", "budget": str(key),
                            "fleet_size": size})

    def take_acks(self) -> list[agent_pb2.BudgetShareAck]:
        """The acks due, once each: the newest generation applied per key."""
        if not self._acks:
            return []
        acks = [agent_pb2.BudgetShareAck(key=key.to_proto(), generation=generation)
                for key, generation in self._acks.items()]
        self._acks.clear()
        return acks

    # -- usage -----------------------------------------------------------------------

    def has_pending(self) -> bool:
        """Whether a flush now would carry an ack or a usage entry."""
        return bool(self._acks) or bool(self._due(self._now(), take=False))

    def take_usage(self) -> list[agent_pb2.BudgetUsage]:
        """The usage entries due now (at most one per key), moving each key's mark."""
        return self._due(self._now(), take=True)

    def _due(self, now: float, *, take: bool) -> list[agent_pb2.BudgetUsage]:
        live = self._registry.budgets()
        entries: list[agent_pb2.BudgetUsage] = []
        for key in self._registry.bound():
            enforcer = live.get(key)
            counted = totals(enforcer) if enforcer is not None else (0, 0, 0)
            last = self._reported.get(key)
            if last is None:
                # Bound since the stream started: its enforcer (if any) is as new as
                # the binding, so every count it holds is since then.
                since = max(self._session_start, self._registry.bound_since(key))
                last = self._reported[key] = _Reported(None, (0, 0, 0), since, False)
            base = last.totals if last.enforcer is enforcer else (0, 0, 0)
            delta = (counted[0] - base[0], counted[1] - base[1], counted[2] - base[2])
            elapsed = now - last.at
            active = any(delta)
            wait = self.usage_interval if active or last.active else self.idle_usage_interval
            if elapsed + _ROUNDING < wait:
                continue
            if take:
                entry = agent_pb2.BudgetUsage(key=key.to_proto(), admitted=max(0, delta[0]),
                                              refused=max(0, delta[1]),
                                              first_attempts=max(0, delta[2]))
                entry.interval.FromNanoseconds(round(min(elapsed, MAX_INTERVAL) * 1e9))
                self._reported[key] = _Reported(enforcer, counted, now, active)
            else:
                entry = agent_pb2.BudgetUsage()
            entries.append(entry)
            if not take:
                break
        for key in [k for k in self._reported if k not in self._registry.bound()]:
            del self._reported[key]
        return entries
