"""Parse and validate Dapr ``kind: Resiliency`` documents into ``ResiliencySpec``.

Validation is all-or-nothing and complete: every violation of every document
is collected before ``SpecValidationError`` is raised, so an operator fixes a
file in one round trip. This is everything one document can tell on its own;
what needs the other documents of the namespace (is a policy name defined
somewhere, does another spec take a target over) is
``fusebox.controlplane.resolve.check_documents``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import yaml

from fusebox.controlplane.spec.budgets import read_rate_limits, read_retry_budgets
from fusebox.controlplane.spec.errors import SpecValidationError, Violation, in_document_order
from fusebox.controlplane.spec.fields import DocumentCheck, describe
from fusebox.controlplane.spec.loader import (
    LoadedDocument,
    Path,
    load_mapping_document,
    load_yaml_documents,
    render_path,
)
from fusebox.controlplane.spec.model import (
    API_VERSION,
    DEFAULT_NAMESPACE,
    KIND,
    ParsedDocument,
    ResiliencySpec,
)
from fusebox.controlplane.spec.policies import (
    POLICY_KINDS,
    read_circuit_breakers,
    read_fallbacks,
    read_retries,
    read_timeouts,
)
from fusebox.controlplane.spec.targets import TARGET_KINDS, TargetReader

DOCUMENT_FIELDS = ("apiVersion", "kind", "metadata", "scopes", "spec")
SPEC_FIELDS = ("policies", "targets")
# Kubernetes ObjectMeta: tolerated so that `kubectl get -o yaml` output applies.
METADATA_FIELDS = (
    "name",
    "namespace",
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generateName",
    "ownerReferences",
    "finalizers",
    "managedFields",
    "selfLink",
)

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def parse_documents(text: str, source: str = "<stdin>") -> list[ParsedDocument]:
    """Every ``kind: Resiliency`` document in a (multi-document) YAML text.

    Empty documents (a stray ``---``) are skipped. Raises ``SpecValidationError``
    listing every error of every document when anything is invalid (and the
    warnings found beside them); each returned document carries its warnings.
    """
    documents, violations = load_yaml_documents(text, source)
    parsed: list[ParsedDocument] = []
    warnings: list[Violation] = []
    for document in documents:
        result, document_violations, document_warnings = _validate(document, source)
        violations.extend(document_violations)
        warnings.extend(document_warnings)
        if result is not None:
            parsed.append(result)
    if not documents and not violations:
        violations.append(
            Violation(source, 0, 0, "", "the input holds no YAML document; expected a "
                      f"'kind: {KIND}' document")
        )
    violations.extend(_duplicate_names(parsed, documents, source))
    if violations:
        raise SpecValidationError(in_document_order(violations), in_document_order(warnings))
    return parsed


def parse_document_mapping(
    document: Mapping[str, Any], source: str = "<request>"
) -> ParsedDocument:
    """Validate one structured document (e.g. from a protobuf ``Struct``).

    Same rules as ``parse_documents``; violations carry line 0. The returned
    ``yaml`` is the document rendered as YAML.
    """
    candidate: object = document  # callers may pass anything an API decoded
    if not isinstance(candidate, Mapping):
        message = f"expected a mapping (a {KIND} document), found {describe(candidate)}"
        raise SpecValidationError([Violation(source, 0, 0, "", message)])
    loaded = load_mapping_document(candidate)
    result, violations, warnings = _validate(loaded, source)
    if violations or result is None:
        raise SpecValidationError(violations, warnings)
    text = yaml.safe_dump(result.document, sort_keys=False, allow_unicode=True)
    return dataclasses.replace(result, yaml=text)


def document_digest(document: Mapping[str, Any]) -> str:
    """sha256 hex of the canonical JSON form of a document."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _validate(
    document: LoadedDocument, source: str
) -> tuple[ParsedDocument | None, list[Violation], list[Violation]]:
    """(the document or None, its errors, its warnings)."""
    check = DocumentCheck(source, document)
    for path, position, message in document.problems:
        check.violations.append(
            Violation(source, position.line, position.column, render_path(path), message)
        )
    if document.broken:
        return None, check.violations, check.warnings
    spec = _read_spec(check, document.data)
    if spec is None or check.violations:
        return None, check.violations, check.warnings
    parsed = ParsedDocument(
        spec, document.text, document.data, document_digest(document.data),
        source=source, warnings=tuple(check.warnings), marks=document,
    )
    return parsed, [], check.warnings


MAX_POLICIES_PER_SPEC = 1000
MAX_TARGETS_PER_SPEC = 1000


def _check_count(check: DocumentCheck, sections: Mapping[str, Any], path: tuple[str, ...],
                 what: str, limit: int) -> None:
    """One violation when the named entries of every kind under ``path`` exceed ``limit``:
    a spec that large is a mistake or an attack, and its resolution would be slow."""
    count = sum(len(v) for v in sections.values() if isinstance(v, dict))
    if count > limit:
        check.fail(path, f"{count} {what} in one spec, at most {limit} accepted "
                         "(split it into several specs)")


def _read_spec(check: DocumentCheck, data: Any) -> ResiliencySpec | None:
    if not isinstance(data, dict):
        check.fail((), f"expected a mapping (a {KIND} document), found {describe(data)}")
        return None
    check.known_keys(data, (), DOCUMENT_FIELDS)
    _check_type(check, data)
    namespace, name = _read_metadata(check, data.get("metadata"))
    scopes = _read_scopes(check, data.get("scopes"))
    spec = check.mapping(data.get("spec"), ("spec",)) or {}
    check.known_keys(spec, ("spec",), SPEC_FIELDS)

    policies_path = ("spec", "policies")
    policies = check.mapping(spec.get("policies"), policies_path) or {}
    check.known_keys(policies, policies_path, POLICY_KINDS)
    _check_count(check, policies, policies_path, "policies", MAX_POLICIES_PER_SPEC)
    timeouts = read_timeouts(check, policies.get("timeouts"), (*policies_path, "timeouts"))
    retries = read_retries(check, policies.get("retries"), (*policies_path, "retries"))
    breakers = read_circuit_breakers(
        check, policies.get("circuitBreakers"), (*policies_path, "circuitBreakers")
    )
    fallbacks = read_fallbacks(check, policies.get("fallbacks"), (*policies_path, "fallbacks"))
    rate_limits = read_rate_limits(
        check, policies.get("rateLimits"), (*policies_path, "rateLimits")
    )
    retry_budgets = read_retry_budgets(
        check, policies.get("retryBudgets"), (*policies_path, "retryBudgets")
    )

    targets_path = ("spec", "targets")
    targets = check.mapping(spec.get("targets"), targets_path) or {}
    check.known_keys(targets, targets_path, TARGET_KINDS)
    _check_count(check, targets, targets_path, "targets", MAX_TARGETS_PER_SPEC)
    reader = TargetReader(check)
    apps = reader.apps(targets.get("apps"), (*targets_path, "apps"))
    actors = reader.actors(targets.get("actors"), (*targets_path, "actors"))
    components = reader.components(targets.get("components"), (*targets_path, "components"))

    if check.violations or name is None:
        return None
    return ResiliencySpec(
        namespace=namespace,
        name=name,
        scopes=scopes,
        timeouts=MappingProxyType(timeouts),
        retries=MappingProxyType(retries),
        circuit_breakers=MappingProxyType(breakers),
        fallbacks=MappingProxyType(fallbacks),
        rate_limits=MappingProxyType(rate_limits),
        retry_budgets=MappingProxyType(retry_budgets),
        apps=MappingProxyType(apps),
        actors=MappingProxyType(actors),
        components=MappingProxyType(components),
    )


def _check_type(check: DocumentCheck, data: Mapping[str, Any]) -> None:
    for key, expected in (("apiVersion", API_VERSION), ("kind", KIND)):
        if data.get(key) is None:
            check.fail((key,), f"{key!r} is required; expected {expected!r}")
        elif data[key] != expected:
            check.fail((key,), f"expected {key} {expected!r}, found {describe(data[key])}")


def _read_metadata(check: DocumentCheck, value: Any) -> tuple[str, str | None]:
    path = ("metadata",)
    if value is None:
        check.fail(path, "'metadata' with a 'name' is required")
        return DEFAULT_NAMESPACE, None
    metadata = check.mapping(value, path)
    if metadata is None:
        return DEFAULT_NAMESPACE, None
    check.known_keys(metadata, path, METADATA_FIELDS)
    name = None
    if check.required(metadata, path, "name"):
        name = _dns_name(check, metadata["name"], (*path, "name"), _DNS_SUBDOMAIN, 253)
    namespace = DEFAULT_NAMESPACE
    if metadata.get("namespace") is not None:
        namespace = (
            _dns_name(check, metadata["namespace"], (*path, "namespace"), _DNS_LABEL, 63)
            or DEFAULT_NAMESPACE
        )
    for key in ("labels", "annotations"):
        entries = check.mapping(metadata.get(key), (*path, key)) or {}
        for entry_key, entry_value in entries.items():
            if not isinstance(entry_value, str):
                check.fail(
                    (*path, key, entry_key),
                    f"{key} values must be strings, found {describe(entry_value)} (quote it)",
                )
    return namespace, name


def _dns_name(
    check: DocumentCheck, value: Any, path: Path, pattern: re.Pattern[str], limit: int
) -> str | None:
    text = check.string(value, path)
    if text is None:
        return None
    if len(text) > limit or not pattern.fullmatch(text):
        check.fail(
            path,
            f"{text!r} is not a valid name: use at most {limit} lowercase letters, digits"
            + (", '-' and '.'" if pattern is _DNS_SUBDOMAIN else " and '-'")
            + ", starting and ending with a letter or digit",
        )
        return None
    return text


def _read_scopes(check: DocumentCheck, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        check.fail(("scopes",), f"expected a list of app-ids, found {describe(value)}")
        return ()
    scopes: list[str] = []
    for index, item in enumerate(value):
        app_id = check.string(item, ("scopes", index))
        if app_id is None:
            continue
        if app_id in scopes:
            # Dapr only asks whether the app-id is in the list (filterResiliencyConfigs).
            check.warn(
                ("scopes", index),
                f"app-id {app_id!r} is listed twice (first at scopes[{value.index(app_id)}]); "
                "the repetition changes nothing",
            )
            continue
        scopes.append(app_id)
    return tuple(scopes)


def _duplicate_names(
    parsed: list[ParsedDocument], documents: list[LoadedDocument], source: str
) -> list[Violation]:
    """Two documents of one input may not define the same (namespace, name)."""
    violations: list[Violation] = []
    seen: dict[tuple[str, str], int] = {}
    by_text = {id(d.data): d for d in documents}
    for result in parsed:
        document = by_text.get(id(result.document))
        position = document.position_of(("metadata", "name")) if document else None
        line = position.line if position else 0
        if result.spec.key in seen:
            namespace, name = result.spec.key
            violations.append(
                Violation(
                    source,
                    line,
                    position.column if position else 0,
                    "metadata.name",
                    f"spec {namespace}/{name} is defined twice in this input "
                    f"(first on line {seen[result.spec.key]})",
                )
            )
        else:
            seen[result.spec.key] = line
    return violations
