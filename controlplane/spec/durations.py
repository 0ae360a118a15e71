"""Dapr durations: milliseconds as bare integers, otherwise Go duration syntax.

Dapr reads a duration with ``strconv.Atoi`` first (so ``"500"`` and ``500``
are 500 ms) and falls back to Go's ``time.ParseDuration`` (``"1h30m"``,
``"1.5s"``, ``"300us"``). This module reproduces both, including Go's
nanosecond precision and its 64-bit range.
"""

from __future__ import annotations

import re

_NANOS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # µ MICRO SIGN
    "\u03bcs": 1_000,  # μ GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_MAX_NANOS = 2**63 - 1
_ACCEPTED = (
    'accepted: milliseconds as an integer ("500") or a Go duration such as '
    '"1h30m", "1.5s", "500ms", "300us", "0"'
)
_MILLIS = re.compile(r"[+-]?[0-9]+")
_COMPONENT = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


def parse_duration(value: object) -> float:
    """Seconds for a Dapr duration; ``ValueError`` with a readable message.

    >>> parse_duration("1m30s"), parse_duration("500"), parse_duration(250)
    (90.0, 0.5, 0.25)
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        found = "null" if value is None else f"{type(value).__name__} {value!r}"
        hint = ' (add a unit: "1.5s", or milliseconds: "1500")' if isinstance(value, float) else ""
        raise ValueError(f"expected a duration, found {found}{hint}; {_ACCEPTED}")
    if isinstance(value, int):
        return _checked_range(value * 1_000_000, str(value)) / 1e9
    text = value
    if _MILLIS.fullmatch(text):
        return _checked_range(int(text) * 1_000_000, text) / 1e9
    return _go_duration_nanos(text) / 1e9


def _checked_range(nanos: int, text: str) -> int:
    if abs(nanos) > _MAX_NANOS:
        raise ValueError(f"duration {text!r} is out of range (at most about 292 years)")
    return nanos


def _go_duration_nanos(text: str) -> int:
    """Go's ``time.ParseDuration``: ``[-+]?([0-9]*(\\.[0-9]*)?[a-z]+)+``."""
    if not text:
        raise ValueError(f"expected a duration, found an empty string; {_ACCEPTED}")
    rest, sign = text, 1
    if rest[0] in "+-":
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        raise ValueError(f"invalid duration {text!r}; {_ACCEPTED}")
    total = 0
    while rest:
        match = _COMPONENT.match(rest)
        assert match is not None  # the pattern matches the empty string
        whole, fraction, unit = match.group(1), match.group(2), match.group(3)
        if not whole and not fraction:
            raise ValueError(f"invalid duration {text!r}; {_ACCEPTED}")
        if not unit:
            raise ValueError(
                f'missing unit in duration {text!r} (units: ns, us, µs, ms, s, m, h; '
                f'a bare integer such as "500" means milliseconds)'
            )
        per_unit = _NANOS_PER_UNIT.get(unit)
        if per_unit is None:
            raise ValueError(
                f"unknown unit {unit!r} in duration {text!r} (units: ns, us, µs, ms, s, m, h)"
            )
        nanos = int(whole or "0") * per_unit
        if fraction:
            # Go truncates the fractional part to whole nanoseconds.
            nanos += int(fraction) * per_unit // 10 ** len(fraction)
        total += nanos
        if total > _MAX_NANOS + (1 if sign < 0 else 0):
            raise ValueError(f"duration {text!r} is out of range (at most about 292 years)")
        rest = rest[match.end() :]
    return sign * total


def format_duration(seconds: float) -> str:
    """A short Go-style rendering (``"1m30s"``, ``"500ms"``) for messages and docs."""
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    sign, nanos = ("-" if nanos < 0 else ""), abs(nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("us", 1_000)):
            if nanos % size == 0:
                return f"{sign}{nanos // size}{unit}"
        return f"{sign}{nanos}ns"
    hours, rem = divmod(nanos, 3600 * 10**9)
    minutes, rem = divmod(rem, 60 * 10**9)
    secs = rem / 1e9
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return f"{sign}{text}{secs:g}s"
