"""What the CLI can do without a server: parse and validate spec files.

``fusebox.controlplane.spec`` (PyYAML-based) is imported on first use so that the
commands that only talk to a server start without loading it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fusebox.controlplane.cli._sources import Source

if TYPE_CHECKING:
    from fusebox.controlplane.spec.model import ParsedDocument


def parse_sources(sources: Sequence[Source]) -> tuple[list[ParsedDocument], list[str]]:
    """Every valid document, and every violation formatted as ``FILE:LINE:COL: PATH: MESSAGE``.

    All sources are parsed even after a failure, so one run reports every problem.
    """
    from fusebox.controlplane.spec import SpecValidationError, parse_documents
    from fusebox.controlplane.wire_errors import format_violation

    documents: list[ParsedDocument] = []
    problems: list[str] = []
    for source in sources:
        try:
            documents.extend(parse_documents(source.text, source.name))
        except SpecValidationError as err:
            problems.extend(format_violation(v) for v in err.violations)
    return documents, problems


def latest_per_spec(documents: Sequence[ParsedDocument]) -> list[ParsedDocument]:
    """One document per (namespace, name), the last one winning, as successive applies would."""
    by_key = {d.spec.key: d for d in documents}
    return list(by_key.values())
