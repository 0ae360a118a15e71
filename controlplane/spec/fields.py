"""Typed field readers that record violations instead of raising.

Validation must report every problem at once, so each reader returns ``None``
(or a default) after recording what was wrong, and the caller carries on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from fusebox.agent.policy import StatusCodes
from fusebox.agent.trip import did_you_mean
from fusebox.controlplane.spec.codes import CodeKind, parse_status_codes
from fusebox.controlplane.spec.durations import parse_duration
from fusebox.controlplane.spec.errors import Severity, Violation
from fusebox.controlplane.spec.loader import LoadedDocument, Path, located

T = TypeVar("T")

UINT32_MAX = 2**32 - 1


def describe(value: object) -> str:
    """How a found value is named in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class DocumentCheck:
    """Collects the errors and warnings of one document, positioned from its marks."""

    def __init__(self, source: str, document: LoadedDocument) -> None:
        self.source = source
        self.document = document
        self.violations: list[Violation] = []  # errors
        self.warnings: list[Violation] = []

    def fail(self, path: Path, message: str, *, at_key: bool = False) -> None:
        self.violations.append(located(self.source, self.document, path, message, at_key=at_key))

    def warn(self, path: Path, message: str, *, at_key: bool = False) -> None:
        self.warnings.append(
            located(self.source, self.document, path, message, Severity.WARNING, at_key=at_key)
        )

    # ---- structure ----------------------------------------------------------

    def mapping(self, value: Any, path: Path, what: str = "a mapping") -> Mapping[str, Any] | None:
        """The mapping at ``path``; ``None`` (after a violation) if it is something else.
        A missing or null section reads as an empty mapping."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(path, f"expected {what}, found {describe(value)}")
            return None
        return value

    def known_keys(self, mapping: Mapping[str, Any], path: Path, allowed: tuple[str, ...]) -> None:
        """Unknown keys are errors, with a did-you-mean over ``allowed``."""
        for key in mapping:
            if key not in allowed:
                self.fail(
                    (*path, key),
                    f"unknown field {key!r}{did_you_mean(key, allowed)}; "
                    f"accepted fields: {', '.join(allowed)}",
                    at_key=True,
                )

    def required(self, mapping: Mapping[str, Any], path: Path, key: str) -> bool:
        if mapping.get(key) is None:
            self.fail((*path, key), f"{key!r} is required")
            return False
        return True

    # ---- scalars -------------------------------------------------------------

    def string(self, value: Any, path: Path, *, allow_empty: bool = False) -> str | None:
        if not isinstance(value, str):
            self.fail(path, f"expected a string, found {describe(value)}")
            return None
        if not allow_empty and not value.strip():
            self.fail(path, "expected a non-empty string")
            return None
        return value

    def integer(
        self,
        value: Any,
        path: Path,
        *,
        minimum: int | None = None,
        maximum: int | None = None,
        rule: str = "",
    ) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"expected an integer, found {describe(value)}")
            return None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            if not rule:
                low = "" if minimum is None else f"at least {minimum}"
                high = "" if maximum is None else f"at most {maximum}"
                rule = "must be " + " and ".join(p for p in (low, high) if p)
            self.fail(path, f"{value} is out of range: {rule}")
            return None
        return value

    def number(self, value: Any, path: Path) -> float | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, f"expected a number, found {describe(value)}")
            return None
        return float(value)

    def boolean(self, value: Any, path: Path) -> bool | None:
        if not isinstance(value, bool):
            self.fail(path, f"expected true or false, found {describe(value)}")
            return None
        return value

    def duration(self, value: Any, path: Path, *, allow_negative: bool = False) -> float | None:
        seconds = self.parsed(parse_duration, value, path)
        if seconds is not None and seconds < 0 and not allow_negative:
            self.fail(path, f"duration {value!r} is negative; expected zero or more")
            return None
        return seconds

    def status_codes(self, value: Any, path: Path, kind: CodeKind) -> StatusCodes | None:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # a single code written without quotes
        if not isinstance(value, str):
            self.fail(path, f'expected a string such as "500,502-504", found {describe(value)}')
            return None
        return self.parsed(lambda text: parse_status_codes(text, kind), value, path)

    def parsed(self, parse: Callable[[Any], T], value: Any, path: Path) -> T | None:
        try:
            return parse(value)
        except ValueError as exc:
            self.fail(path, str(exc))
            return None
