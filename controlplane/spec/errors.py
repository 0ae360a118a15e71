"""Validation errors for Resiliency specs: every problem, with where and why.

::

    SpecValidationError (ValueError)
      .violations: list[Violation]   # one per problem, in document order
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Violation:
    """One problem in a spec: where it is and what would be accepted.

    ``line`` and ``column`` are 1-based; 0 when unknown (a structured document
    sent over the API has no lines).
    """

    source: str
    line: int
    column: int
    field_path: str  # e.g. "spec.policies.retries.retryForever.duration"; "" = the document
    message: str

    def __str__(self) -> str:
        where = self.source
        if self.line:
            where += f":{self.line}:{self.column}"
        field = f" {self.field_path}:" if self.field_path else ""
        return f"{where}:{field} {self.message}"


class SpecValidationError(ValueError):
    """The input holds at least one invalid document; nothing should be stored.

    ``str()`` is one line per violation, e.g.
    ``resiliency.yaml:12:19: spec.policies.retries.r1.maxRetries: ...``.
    """

    def __init__(self, violations: Iterable[Violation]) -> None:
        self.violations = list(violations)
        super().__init__("\n".join(str(v) for v in self.violations))

    def __str__(self) -> str:
        return "\n".join(str(v) for v in self.violations)
