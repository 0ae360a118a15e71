"""Dapr's ``matching`` status code lists: ``"500,502-504"``.

Mirrors ``parsePatterns``/``compilePattern`` in dapr/dapr
``pkg/resiliency/retry.go``: Dapr splits on commas, skips empty entries
(``"500,"`` is ``"500"``) and reads each part with ``strconv.Atoi``, so a space
after a comma is an error there too; Fusebox says so in plain words.
"""

from __future__ import annotations

import re
from typing import Literal

from fusebox.agent.policy import StatusCodes

CodeKind = Literal["http", "grpc"]

# What strconv.Atoi reads once the "-" of a range has been split off.
_ATOI_DIGITS = re.compile(r"\+?[0-9]+")

_BOUNDS: dict[str, tuple[int, int, str]] = {
    "http": (100, 599, "HTTP status codes are 100-599"),
    "grpc": (0, 16, "gRPC status codes are 0-16"),
}


def parse_status_codes(text: str, kind: CodeKind) -> StatusCodes:
    """Parse ``"500,502-504"`` into inclusive ranges; ``ValueError`` when invalid.

    An empty string means "not restricted" (an empty ``StatusCodes``). Empty
    entries are skipped, as Dapr skips them, and a bound may carry a ``+`` sign
    (``strconv.Atoi`` takes one). A list of nothing but commas is refused: Dapr
    would read it as "no code matches", the opposite of the empty string.

    >>> str(parse_status_codes("429,500-504,", "http"))
    '429,500-504'
    """
    low, high, rule = _BOUNDS[kind]
    if not isinstance(text, str):
        raise ValueError(f'expected a string such as "500,502-504", found {type(text).__name__}')
    if text == "":
        return StatusCodes()
    if any(ch.isspace() for ch in text):
        raise ValueError(
            f'{text!r} contains spaces, which are not allowed (Dapr rejects them too): '
            f'write {"".join(text.split())!r}'
        )
    ranges: list[tuple[int, int]] = []
    for part in text.split(","):
        if not part:
            continue  # Dapr: "make sure empty patterns are ignored"
        bounds = part.split("-")
        if len(bounds) > 2 or not all(_ATOI_DIGITS.fullmatch(b) for b in bounds):
            raise ValueError(
                f'{part!r} in {text!r} is not a code or a range; expected e.g. "503" or "500-504"'
            )
        first, last = int(bounds[0]), int(bounds[-1])
        if first > last:
            raise ValueError(
                f"range {part!r} is reversed: its start is greater than its end "
                f"(write {last}-{first})"
            )
        for code in {first, last}:
            if not low <= code <= high:
                raise ValueError(f"code {code} in {text!r} is out of range: {rule}")
        ranges.append((first, last))
    if not ranges:
        raise ValueError(
            f'{text!r} lists no code: Dapr would then match no status code at all, unlike '
            f'"" (or leaving the field out), which matches every one; write codes or ranges '
            f'like "500,502-504", or ""'
        )
    return StatusCodes(tuple(ranges))
