"""What the CLI can do without a server: parse and check spec files.

Offline, the files given are all the CLI knows: a target naming a policy that
none of them defines may still be valid (another Resiliency document of the
namespace, already stored, may define it), so that is a warning saying what
could not be checked, not an error.

``fusebox.controlplane.spec`` (PyYAML-based) is imported on first use so that the
commands that only talk to a server start without loading it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fusebox.controlplane.cli._sources import Source

if TYPE_CHECKING:
    from fusebox.controlplane.spec import Violation
    from fusebox.controlplane.spec.model import ParsedDocument


@dataclass(slots=True)
class OfflineCheck:
    """The documents of the files given, and every error and warning about them
    in the order of the files and of their lines."""

    documents: list[ParsedDocument] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)

    @property
    def error_count(self) -> int:
        return sum(not v.is_warning for v in self.violations)

    @property
    def warning_count(self) -> int:
        return sum(v.is_warning for v in self.violations)

    def lines(self) -> list[str]:
        """Each violation as ``FILE:LINE:COL: PATH: [warning: ]MESSAGE``."""
        from fusebox.controlplane.wire_errors import format_violation

        return [format_violation(v) for v in self.violations]


def check_sources(sources: Sequence[Source]) -> OfflineCheck:
    """Parse every source, then check the documents together (offline).

    All sources are parsed even after a failure, so one run reports every
    problem. The cross-document checks run only when every document parsed:
    a broken file may define the policies the others name.
    """
    from fusebox.controlplane.resolve import check_documents
    from fusebox.controlplane.spec import SpecValidationError, parse_documents

    documents: list[ParsedDocument] = []
    violations: list[Violation] = []
    for source in sources:
        try:
            parsed = parse_documents(source.text, source.name)
        except SpecValidationError as err:
            violations.extend([*err.violations, *err.warnings])
            continue
        documents.extend(parsed)
        violations.extend(w for d in parsed for w in d.warnings)
    if all(v.is_warning for v in violations):
        violations.extend(check_documents(documents, None))
    order = {source.name: index for index, source in enumerate(sources)}
    violations.sort(key=lambda v: (order.get(v.source, len(order)), v.line, v.column, v.is_warning))
    return OfflineCheck(documents, violations)


def latest_per_spec(documents: Sequence[ParsedDocument]) -> list[ParsedDocument]:
    """One document per (namespace, name), the last one winning, as successive applies would."""
    by_key = {d.spec.key: d for d in documents}
    return list(by_key.values())
