"""Dapr ``kind: Resiliency`` specs: safe loading, complete validation, the model.

>>> docs = parse_documents(open("resiliency.yaml").read(), "resiliency.yaml")  # doctest: +SKIP
>>> docs[0].spec.retries["retryForever"].max_retries  # doctest: +SKIP
-1
"""

from fusebox.controlplane.spec.codes import parse_status_codes
from fusebox.controlplane.spec.durations import parse_duration
from fusebox.controlplane.spec.errors import Severity, SpecValidationError, Violation
from fusebox.controlplane.spec.loader import MAX_DEPTH, MAX_NODES, MAX_SPEC_BYTES
from fusebox.controlplane.spec.model import (
    API_VERSION,
    DEFAULT_NAMESPACE,
    KIND,
    ComponentTargets,
    ParsedDocument,
    ResiliencySpec,
    TargetRef,
)
from fusebox.controlplane.spec.validate import (
    MAX_POLICIES_PER_SPEC,
    MAX_TARGETS_PER_SPEC,
    document_digest,
    parse_document_mapping,
    parse_documents,
)

__all__ = [
    "API_VERSION",
    "DEFAULT_NAMESPACE",
    "KIND",
    "MAX_DEPTH",
    "MAX_NODES",
    "MAX_POLICIES_PER_SPEC",
    "MAX_SPEC_BYTES",
    "MAX_TARGETS_PER_SPEC",
    "ComponentTargets",
    "ParsedDocument",
    "ResiliencySpec",
    "Severity",
    "SpecValidationError",
    "TargetRef",
    "Violation",
    "document_digest",
    "parse_document_mapping",
    "parse_documents",
    "parse_duration",
    "parse_status_codes",
]
