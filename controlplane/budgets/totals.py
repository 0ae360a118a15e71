"""A budget's fleet counters: admitted, refused and first attempts per second.

A ring of ``SLOTS`` one-second slots kept as flat fields (``t<i>`` the second
a slot holds, ``a<i>``/``r<i>``/``f<i>`` its counts), the same fields in the
embedded store's dict and in Redis (``budget_allocate.lua`` writes them): a
slot is reset when a new second lands on it. Rates are read over the
``WINDOW`` complete seconds before now, so a reading is never of a second
still being filled. Counts land in the second the replica's refresh brought
them to the store (within a refresh period of the calls).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

__all__ = ["SLOTS", "WINDOW", "add_counts", "rates"]

SLOTS = 16
WINDOW = 10


def add_counts(ring: MutableMapping[str, str], second: int, admitted: int, refused: int,
               first_attempts: int) -> None:
    slot = second % SLOTS
    if ring.get(f"t{slot}") != str(second):
        ring[f"t{slot}"] = str(second)
        for name in "arf":
            ring[f"{name}{slot}"] = "0"
    for name, count in (("a", admitted), ("r", refused), ("f", first_attempts)):
        ring[f"{name}{slot}"] = str(int(ring[f"{name}{slot}"]) + count)


def rates(ring: Mapping[str, str], now: float) -> tuple[float, float, float]:
    """(admitted, refused, first attempts) per second over the last ``WINDOW`` seconds."""
    current = int(now)
    sums = [0, 0, 0]
    for slot in range(SLOTS):
        second = ring.get(f"t{slot}")
        if second is None or not current - WINDOW <= int(second) < current:
            continue
        for i, name in enumerate("arf"):
            sums[i] += int(ring.get(f"{name}{slot}", "0"))
    return (sums[0] / WINDOW, sums[1] / WINDOW, sums[2] / WINDOW)
