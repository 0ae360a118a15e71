"""Problems found in Resiliency specs: errors refuse the input, warnings do not.

::

    Violation                        # one problem: where, what, how severe
      .severity: Severity            # ERROR refuses the input, WARNING only informs
    SpecValidationError (ValueError)
      .violations: list[Violation]   # the errors, in document order
      .warnings: list[Violation]     # the warnings found on the way

Fusebox accepts what Dapr accepts: an error is for input Dapr would mis-handle
(a typo'd field, a policy that exists nowhere); input that is merely suspicious
(an app-id listed twice in ``scopes``, a target another spec takes over) is a
warning.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


class Severity(enum.Enum):
    """How much a violation matters: an error refuses the input, a warning does not."""

    ERROR = "error"
    WARNING = "warning"


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
    severity: Severity = Severity.ERROR

    @property
    def is_warning(self) -> bool:
        return self.severity is Severity.WARNING

    def __str__(self) -> str:
        where = self.source
        if self.line:
            where += f":{self.line}:{self.column}"
        field = f" {self.field_path}:" if self.field_path else ""
        label = " warning:" if self.is_warning else ""
        return f"{where}:{field}{label} {self.message}"


def in_document_order(violations: Iterable[Violation]) -> list[Violation]:
    """Sorted by source, then position; errors before warnings at one position."""
    return sorted(
        violations, key=lambda v: (v.source, v.line, v.column, v.is_warning, v.field_path)
    )


class SpecValidationError(ValueError):
    """The input holds at least one error; nothing should be stored.

    ``str()`` is one line per error, e.g.
    ``resiliency.yaml:12:19: spec.policies.retries.r1.maxRetries: ...``.
    ``warnings`` holds what was found beside the errors, so one run can report
    every problem.
    """

    def __init__(
        self, violations: Iterable[Violation], warnings: Iterable[Violation] = ()
    ) -> None:
        self.violations = list(violations)
        self.warnings = list(warnings)
        super().__init__("\n".join(str(v) for v in self.violations))

    def __str__(self) -> str:
        return "\n".join(str(v) for v in self.violations)
