"""Dividing one fleet budget into instance shares (docs/budgets.md, section 4).

The one pure implementation: the embedded store runs it in memory, and
``budget_allocate.lua`` mirrors it step for step (same order of operations,
same sort orders, so both homes compute the same floats; a differential test
checks it). Everything is in *share units*: fractions of the fleet budget.

One refresh of a key (``refresh_rows``), in this order:

1. departures (``left`` = now), then holders (``seen`` = now, ``left`` cleared:
   a holder that reconnected wins over its old session's departure);
2. usage: each instance's demand, a decaying counter (time constant ``tau``),
   read undecayed for ``demand_hold`` (however old its owner replica's last
   write), decaying beyond, and 0 once nothing was reported for ``idle_after``;
3. acks: the agent enforces generation >= g, so smaller un-acked grants no
   longer count;
4. rows whose share is freed are dropped: departed for a lease, or not seen by
   any replica for two leases (a replica that died without saying so);
5. targets: max-min water-filling of ``max(m/N, d/R)``; headroom (up to
   ``d(1+h)/R``) only out of what that leaves free (none when saturated);
6. lowered targets are granted at once; raised ones only out of what is free
   after every row's *held* share (the largest grant it may still enforce),
   so the sum of what instances may enforce never exceeds 1. Changes within
   the hysteresis are skipped only while the budget is not saturated.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_PARAMS",
    "MAX_OUTSTANDING",
    "AllocationParams",
    "Holding",
    "RefreshResult",
    "demand_now",
    "refresh_rows",
    "water_fill",
]

#: Un-acked grants remembered per instance; older ones merge (conservatively).
MAX_OUTSTANDING = 16
#: Changes smaller than this are not worth a new generation (absolute, share units).
_TINY = 1e-12
#: Shortest time a demand report is spread over (two reports in one instant).
_MIN_SPAN = 0.001


@dataclass(frozen=True, slots=True)
class AllocationParams:
    """The knobs of section 4 (the server's defaults; tests pick their own).

    ``lease``: how long a pushed share holds without renewal (L);
    ``min_share``: m, an idle instance's fraction of an even split;
    ``headroom``: h, growth allowed between refreshes;
    ``tau``: the demand estimate's time constant (seconds);
    ``idle_after``: no demand reported this long reads as no demand;
    ``hysteresis``: a target within this fraction of the current grant keeps it
    (no new generation, no ack round for noise) while the budget is not
    saturated; a saturated budget moves every share (see ``_threshold``);
    ``demand_hold``: a demand reads undecayed this long after its last update
    (the period within which the replica owning the row updates it: two
    refreshes), then decays; the server sets it from ``--budget-refresh``.
    """

    lease: float = 2.0
    min_share: float = 0.1
    headroom: float = 0.25
    tau: float = 0.5
    idle_after: float = 1.0
    hysteresis: float = 0.02
    demand_hold: float = 0.5

    @property
    def stale_after(self) -> float:
        """A row no replica has seen for this long is dropped (its streams ended by then)."""
        return 2.0 * self.lease


DEFAULT_PARAMS = AllocationParams()


@dataclass(slots=True)
class Holding:
    """One instance's row in a budget's table. Times are unix seconds (0: never)."""

    demand: float = 0.0  # decaying counter, per second, as of demand_at
    demand_at: float = 0.0
    seen: float = 0.0
    left: float = 0.0  # when its session ended (0: live)
    granted: float = 0.0  # the latest grant
    generation: int = 0  # of the latest grant (0: none yet)
    acked: int = 0  # the agent enforces a grant of at least this generation
    #: Grants it may still enforce, (generation, share), generation increasing and
    #: share strictly decreasing (a later larger grant makes earlier ones irrelevant).
    outstanding: list[tuple[int, float]] = field(default_factory=list)

    @property
    def held(self) -> float:
        """The largest share this instance may be enforcing (what others cannot have)."""
        return self.outstanding[0][1] if self.outstanding else 0.0


@dataclass(frozen=True, slots=True)
class RefreshResult:
    generation: int  # the key's latest
    fleet: tuple[str, ...]  # live instances, sorted
    free: float  # 1 - sum of held shares (never negative)


def demand_now(row: Holding, now: float, params: AllocationParams) -> float:
    """The row's demand (calls or uncovered retries per second) at ``now``, as the
    allocation and ``fusebox budgets get`` read it.

    Undecayed for ``demand_hold`` after its last update: a row another replica
    owns (or whose instance made no call since the last refresh) is only as
    old as that replica's refresh period, and decaying it for that age read
    every other replica's instances low (22% with two replicas). Beyond the
    hold it decays, and it reads 0 after ``idle_after`` as before.
    """
    if row.demand_at <= 0:
        return 0.0
    age = now - row.demand_at
    if age > params.idle_after:
        return 0.0
    return row.demand * math.exp(-max(0.0, age - params.demand_hold) / params.tau)


def _decayed(row: Holding, now: float, params: AllocationParams) -> float:
    """The estimate's own state at ``now``: the exponentially weighted rate with no
    new event since ``demand_at`` (what a new report adds to)."""
    if row.demand_at <= 0 or now - row.demand_at > params.idle_after:
        return 0.0
    return row.demand * math.exp(-max(0.0, now - row.demand_at) / params.tau)


def record_demand(row: Holding, count: float, now: float, params: AllocationParams) -> None:
    """Add ``count`` units of demand reported at ``now``, spread over the time since
    the row's previous report (an exponentially weighted rate: a steady rate r
    reads r at each report, whatever the reporting period)."""
    if count <= 0:
        return
    span = now - row.demand_at if row.demand_at > 0 else params.tau
    span = min(max(span, _MIN_SPAN), params.idle_after)
    keep = math.exp(-span / params.tau)
    row.demand = _decayed(row, now, params) + count / span * (1.0 - keep)
    row.demand_at = now


def acknowledge(row: Holding, generation: int) -> None:
    """The agent enforces a grant of ``generation`` or newer: older ones are no longer held."""
    if generation > row.generation or generation <= row.acked:
        return  # never granted (a confused agent), or old news
    row.acked = generation
    row.outstanding = [(g, s) for g, s in row.outstanding if g >= generation]


def _grant(row: Holding, share: float, generation: int) -> None:
    row.granted = share
    row.generation = generation
    kept = [(g, s) for g, s in row.outstanding if s > share]
    kept.append((generation, share))
    while len(kept) > MAX_OUTSTANDING:
        # Merge the two oldest: the older (larger) share now lasts until the
        # newer one's ack. Holds more than needed, never less.
        kept[0:2] = [(kept[1][0], kept[0][1])]
    row.outstanding = kept


def water_fill(wants: Mapping[str, float], capacity: float = 1.0) -> dict[str, float]:
    """Max-min fair targets of ``capacity``: every want when they fit, else the level
    ``λ`` with ``Σ min(w, λ) = capacity``. Ascending (want, id) order, as the Lua does."""
    total = 0.0
    for instance in sorted(wants):
        total += wants[instance]
    if total <= capacity:
        return dict(wants)
    order = sorted(wants, key=lambda i: (wants[i], i))
    targets: dict[str, float] = {}
    remaining = capacity
    for index, instance in enumerate(order):
        level = remaining / (len(order) - index)
        if wants[instance] <= level:
            targets[instance] = wants[instance]
            remaining -= wants[instance]
        else:
            for rest in order[index:]:
                targets[rest] = level
            break
    return targets


def refresh_rows(
    rows: dict[str, Holding],
    *,
    rate: float,
    holders: Collection[str],
    usage: Mapping[str, float],
    acks: Mapping[str, int],
    departed: Collection[str],
    generation: int,
    now: float,
    params: AllocationParams = DEFAULT_PARAMS,
) -> RefreshResult:
    """One refresh of one key's table, in place (see the module docstring).

    ``rate`` is the fleet's R (calls or retries per second); ``usage`` the
    demand units reported per instance since the last refresh; ``generation``
    the key's latest, returned advanced by the grants made.
    """
    for instance in sorted(departed):
        row = rows.get(instance)
        if row is not None and row.left <= 0:
            row.left = now
    for instance in sorted(holders):
        row = rows.get(instance)
        if row is None:
            row = rows[instance] = Holding()
        row.seen = now
        row.left = 0.0
    for instance in sorted(usage):
        row = rows.get(instance)
        if row is not None and row.left <= 0:
            row.seen = now
            record_demand(row, usage[instance], now, params)
    for instance in sorted(acks):
        row = rows.get(instance)
        if row is not None:
            acknowledge(row, acks[instance])
    for instance in sorted(rows):
        row = rows[instance]
        if (row.left > 0 and now >= row.left + params.lease) or (
            row.left <= 0 and now - row.seen > params.stale_after
        ):
            del rows[instance]

    fleet = tuple(i for i in sorted(rows) if rows[i].left <= 0)
    if fleet:
        targets, saturated = fleet_targets(rows, fleet, rate, now, params)
        generation = _apply_targets(rows, fleet, targets, saturated, generation, params)
    held_total = 0.0
    for instance in sorted(rows):
        held_total += rows[instance].held
    return RefreshResult(generation, fleet, max(0.0, 1.0 - held_total))


def fleet_targets(rows: Mapping[str, Holding], fleet: tuple[str, ...], rate: float,
                  now: float, params: AllocationParams) -> tuple[dict[str, float], bool]:
    """Each live instance's target share, and whether the budget is saturated.

    Demand first: max-min over ``max(m/N, d/R)``. Headroom (``h``, room to grow
    between refreshes) only out of what is left once every demand is met,
    max-min over each instance's ``d·(1+h)/R`` less its base: headroom held
    unused while others are refused was 3.3% of the limit at 10:1 skew.
    """
    size = len(fleet)
    if rate <= 0:  # no fleet rate to divide: an even split of nothing
        return {i: min(1.0, 1.0 / size) for i in fleet}, False
    floor = params.min_share / size
    base: dict[str, float] = {}
    extra: dict[str, float] = {}
    for instance in fleet:
        demand = demand_now(rows[instance], now, params) / rate
        base[instance] = min(1.0, max(floor, demand))
        extra[instance] = max(0.0, min(1.0, max(floor, demand * (1.0 + params.headroom)))
                              - base[instance])
    targets = water_fill(base)
    left = 1.0
    for instance in fleet:
        left -= targets[instance]
    if left <= _TINY:
        return targets, True
    more = water_fill(extra, left)
    return {i: targets[i] + more[i] for i in fleet}, False


def _threshold(saturated: bool, share: float, params: AllocationParams) -> float:
    """The smallest change of ``share`` worth a new generation. Hysteresis only while
    the budget is not saturated: there every target carries headroom, so a
    share a little off costs nobody a call. A saturated budget moves every
    share: a busy instance's grant kept 2% over its target was capacity the
    light ones' raises waited for, and nobody else could have it."""
    return _TINY if saturated else max(_TINY, params.hysteresis * share)


def _apply_targets(rows: dict[str, Holding], fleet: tuple[str, ...],
                   targets: Mapping[str, float], saturated: bool, generation: int,
                   params: AllocationParams) -> int:
    """Grant the targets without ever letting Σ held exceed 1: lowers at once (the
    agent's old grant stays held until it acks), then raises, the least served
    first, out of what nobody holds. Returns the key's generation, advanced."""
    for instance in fleet:
        row = rows[instance]
        target = targets[instance]
        if row.generation > 0 and row.granted - target > _threshold(saturated, row.granted,
                                                                      params):
            generation += 1
            _grant(row, target, generation)

    free = 1.0
    for instance in sorted(rows):
        free -= rows[instance].held
    raising = [i for i in fleet if rows[i].generation == 0 or targets[i] - rows[i].granted
               > _threshold(saturated, targets[i], params)]
    raising.sort(key=lambda i: (rows[i].granted, i))
    for instance in raising:
        row = rows[instance]
        target, held = targets[instance], row.held
        if held >= target:
            share = target  # it may enforce as much already: costs nothing
        else:
            share = min(target, held + max(0.0, free))
            free -= share - held
        if row.generation == 0 or share - row.granted > _TINY:
            generation += 1
            _grant(row, share, generation)
    return generation
