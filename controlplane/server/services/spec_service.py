"""SpecService: validate, version and serve Resiliency documents."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import grpc
from google.protobuf import json_format, struct_pb2

from fusebox.controlplane.audit import AuditAction
from fusebox.controlplane.resolve import check_documents
from fusebox.controlplane.server.engines.policy_hub import PolicyHub
from fusebox.controlplane.server.logs import log_event
from fusebox.controlplane.server.security.identity import principal
from fusebox.controlplane.server.services.audit_recorder import (
    AuditRecorder,
    describe_spec,
    spec_entry,
)
from fusebox.controlplane.server.wire_time import timestamp
from fusebox.controlplane.spec import (
    MAX_SPEC_BYTES,
    ParsedDocument,
    ResiliencySpec,
    SpecValidationError,
    Violation,
    parse_document_mapping,
    parse_documents,
)
from fusebox.controlplane.spec.errors import in_document_order
from fusebox.controlplane.spec.model import DEFAULT_NAMESPACE
from fusebox.controlplane.spec_store.base import (
    RevisionAction,
    RevisionConflict,
    RevisionRecord,
    SpecNotFound,
    SpecStore,
    SpecWrite,
    StoredSpec,
)
from fusebox.controlplane.store_errors import StoreUnavailable
from fusebox.controlplane.wire_enums import REVISION_ACTION_TO_PB
from fusebox.controlplane.wire_errors import violation_to_proto, violations_status
from fusebox.v1 import spec_pb2, spec_pb2_grpc

log = logging.getLogger("fusebox.server.specs")



def _struct(document: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(document)
    return s


def spec_to_proto(stored: StoredSpec) -> spec_pb2.Spec:
    return spec_pb2.Spec(
        namespace=stored.namespace,
        name=stored.name,
        revision=stored.revision,
        yaml=stored.yaml,
        document=_struct(stored.document),
        update_time=timestamp(stored.update_time),
        digest=stored.digest,
    )


def revision_to_proto(record: RevisionRecord) -> spec_pb2.SpecRevision:
    return spec_pb2.SpecRevision(
        revision=record.revision,
        action=REVISION_ACTION_TO_PB[record.action],
        create_time=timestamp(record.create_time),
        digest=record.digest,
        yaml=record.yaml,
        rolled_back_to=record.rolled_back_to,
    )


def _integral_numbers(value: Any) -> Any:
    """google.protobuf.Struct carries every number as a double; a Dapr document
    means integers (``maxRetries: 3``, ``timeout: 500``), so turn 3.0 back into 3."""
    if isinstance(value, dict):
        return {k: _integral_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral_numbers(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


async def _abort(
    context: grpc.aio.ServicerContext[Any, Any], code: grpc.StatusCode, msg: str
) -> NoReturn:
    await context.abort(code, msg)
    raise AssertionError("unreachable: abort raises")


def _namespace(value: str) -> str:
    return value or DEFAULT_NAMESPACE


class SpecService(spec_pb2_grpc.SpecServiceServicer):
    def __init__(
        self, store: SpecStore, hub: PolicyHub, audit: AuditRecorder | None = None
    ) -> None:
        self._store = store
        self._hub = hub
        self._audit = audit if audit is not None else AuditRecorder(None)

    async def _live(self, namespace: str, name: str) -> tuple[int, str]:
        """(revision, digest) of the live spec, (0, "") when there is none: the
        audit log's "previous". Read before the write; a concurrent writer in
        between is visible in the log as its own entry."""
        try:
            current = await self._store.get(namespace, name)
        except SpecNotFound:
            return 0, ""
        return current.revision, current.digest

    # -- helpers -------------------------------------------------------------

    async def _guard(
        self, context: grpc.aio.ServicerContext[Any, Any], op: Callable[[], Awaitable[Any]]
    ) -> Any:
        """Run a store operation, mapping store errors to gRPC status codes."""
        try:
            return await op()
        except SpecNotFound as e:
            await _abort(context, grpc.StatusCode.NOT_FOUND, str(e))
        except RevisionConflict as e:
            await _abort(context, grpc.StatusCode.ABORTED, str(e))
        except StoreUnavailable as e:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, f"spec store unavailable: {e}")

    async def _require_name(self, context: grpc.aio.ServicerContext[Any, Any], name: str) -> None:
        if not name:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "name: required")

    def _parse(self, request: spec_pb2.ApplySpecRequest) -> list[ParsedDocument]:
        source = request.source_name or "<request>"
        which = request.WhichOneof("source")
        if request.files:
            if which is not None:
                raise SpecValidationError([Violation(
                    source, 0, 0, "files", f"`files` cannot be combined with `{which}`"
                )])
            return _parse_texts([(f.source_name or "<request>", f.yaml) for f in request.files])
        if which == "yaml":
            return _parse_texts([(source, request.yaml)])
        if which == "document":
            document = _integral_numbers(json_format.MessageToDict(request.document))
            return [parse_document_mapping(document, source)]
        raise SpecValidationError(
            [Violation(source, 0, 0, "source", "one of `yaml`, `document` or `files` is required")]
        )

    async def _stored_specs(self, namespaces: set[str]) -> list[ResiliencySpec]:
        """The specs stored in ``namespaces``: what new documents are checked against."""
        specs: list[ResiliencySpec] = []
        for namespace in sorted(namespaces):
            stored, _ = await self._store.list(namespace)
            for spec in stored:
                try:
                    specs.append(parse_document_mapping(
                        dict(spec.document), f"{spec.namespace}/{spec.name}@{spec.revision}"
                    ).spec)
                except SpecValidationError:
                    continue  # stored before a stricter validator: the PolicyHub ignores it too
        return specs

    async def _check(
        self, documents: list[ParsedDocument], context: grpc.aio.ServicerContext[Any, Any]
    ) -> list[Violation]:
        """The warnings of ``documents`` applied together over the stored specs of
        their namespaces; raises SpecValidationError when there is an error.

        Checked before the write, not atomically with it: a concurrent apply in
        between is checked against the specs as they were.
        """
        namespaces = {d.spec.namespace for d in documents}
        stored = await self._guard(context, lambda: self._stored_specs(namespaces))
        found = check_documents(documents, stored)
        warnings = in_document_order(
            [*(w for d in documents for w in d.warnings), *(v for v in found if v.is_warning)]
        )
        errors = [v for v in found if not v.is_warning]
        if errors:
            raise SpecValidationError(errors, warnings)
        return warnings

    async def _validated(
        self, request: spec_pb2.ApplySpecRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tuple[list[ParsedDocument], list[Violation]]:
        """The documents of an apply and their warnings; aborts on any error."""
        try:
            documents = self._parse(request)
            warnings = await self._check(documents, context) if documents else []
        except SpecValidationError as e:
            log_event(log, logging.INFO, "spec rejected", source=_source_names(request),
                      errors=len(e.violations), warnings=len(e.warnings))
            await context.abort_with_status(violations_status(e.violations, e.warnings))
            raise AssertionError("unreachable") from e
        return documents, warnings

    # -- RPCs ----------------------------------------------------------------

    async def ApplySpec(
        self, request: spec_pb2.ApplySpecRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> spec_pb2.ApplySpecResponse:
        documents, warnings = await self._validated(request, context)
        if not documents:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                         "no Resiliency document found in the input")
        expected = request.expected_revision if request.HasField("expected_revision") else None
        if expected is not None and len(documents) != 1:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT,
                f"expected_revision: only valid with exactly one document, got {len(documents)}",
            )
        writes = [
            SpecWrite(
                namespace=d.spec.namespace, name=d.spec.name, yaml=d.yaml,
                document=d.document, digest=d.digest, expected_revision=expected,
            )
            for d in documents
        ]
        if request.dry_run:
            applied = [
                await self._guard(context, functools.partial(self._dry_run, w)) for w in writes
            ]
            return spec_pb2.ApplySpecResponse(
                specs=applied, warnings=[violation_to_proto(w) for w in warnings]
            )
        before = [await self._guard(context, functools.partial(self._live, w.namespace, w.name))
                  for w in writes]
        results = await self._guard(context, lambda: self._store.apply(writes))
        for r, w, (previous, previous_digest) in zip(results, writes, before, strict=True):
            log_event(log, logging.INFO, "spec applied" if r.changed else "spec unchanged",
                      namespace=r.namespace, name=r.name, revision=r.revision,
                      warnings=len(warnings))
            if r.changed:
                await self._audit.record(spec_entry(
                    principal(context), AuditAction.SPEC_APPLY, r.namespace, r.name,
                    describe_spec(previous, previous_digest), describe_spec(r.revision, w.digest),
                    detail=f"source {_source_names(request)}",
                ))
        return spec_pb2.ApplySpecResponse(
            specs=[
                spec_pb2.AppliedSpec(namespace=r.namespace, name=r.name, revision=r.revision,
                                     changed=r.changed)
                for r in results
            ],
            warnings=[violation_to_proto(w) for w in warnings],
        )

    async def _dry_run(self, write: SpecWrite) -> spec_pb2.AppliedSpec:
        """What apply would do, checked against the store but not written."""
        try:
            current = await self._store.get(write.namespace, write.name)
            revision, digest = current.revision, current.digest
        except SpecNotFound:
            revision, digest = 0, ""
        if write.expected_revision is not None and write.expected_revision != revision:
            raise RevisionConflict(write.namespace, write.name, write.expected_revision, revision)
        changed = digest != write.digest
        if changed and revision == 0:
            # A deleted spec continues its numbering: look at its history.
            try:
                revision = (await self._store.history(write.namespace, write.name))[-1].revision
            except SpecNotFound:
                revision = 0
        return spec_pb2.AppliedSpec(
            namespace=write.namespace, name=write.name,
            revision=revision + 1 if changed else revision, changed=changed,
        )

    async def GetSpec(
        self, request: spec_pb2.GetSpecRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> spec_pb2.GetSpecResponse:
        await self._require_name(context, request.name)
        if request.revision < 0:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                         "revision: must be 0 (current) or a positive revision number")
        stored = await self._guard(
            context,
            lambda: self._store.get(_namespace(request.namespace), request.name, request.revision),
        )
        return spec_pb2.GetSpecResponse(spec=spec_to_proto(stored))

    async def ListSpecs(
        self, request: spec_pb2.ListSpecsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> spec_pb2.ListSpecsResponse:
        specs, store_revision = await self._guard(
            context, lambda: self._store.list(request.namespace or None)
        )
        return spec_pb2.ListSpecsResponse(
            specs=[spec_to_proto(s) for s in specs], store_revision=store_revision
        )

    async def DeleteSpec(
        self, request: spec_pb2.DeleteSpecRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> spec_pb2.DeleteSpecResponse:
        await self._require_name(context, request.name)
        expected = request.expected_revision if request.HasField("expected_revision") else None
        namespace = _namespace(request.namespace)
        previous, previous_digest = await self._guard(
            context, lambda: self._live(namespace, request.name)
        )
        revision = await self._guard(
            context, lambda: self._store.delete(namespace, request.name, expected)
        )
        log_event(log, logging.INFO, "spec deleted", namespace=namespace, name=request.name,
                  revision=revision)
        await self._audit.record(spec_entry(
            principal(context), AuditAction.SPEC_DELETE, namespace, request.name,
            describe_spec(previous, previous_digest), f"revision {revision} (deleted)",
        ))
        return spec_pb2.DeleteSpecResponse(revision=revision)

    async def ListSpecRevisions(
        self, request: spec_pb2.ListSpecRevisionsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> spec_pb2.ListSpecRevisionsResponse:
        await self._require_name(context, request.name)
        records = await self._guard(
            context, lambda: self._store.history(_namespace(request.namespace), request.name)
        )
        return spec_pb2.ListSpecRevisionsResponse(revisions=[revision_to_proto(r) for r in records])

    async def RollbackSpec(
        self, request: spec_pb2.RollbackSpecRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> spec_pb2.RollbackSpecResponse:
        await self._require_name(context, request.name)
        namespace = _namespace(request.namespace)
        if request.to_revision <= 0:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT,
                         "to_revision: must be a positive revision number")
        records: list[RevisionRecord] = await self._guard(
            context, lambda: self._store.history(namespace, request.name)
        )
        target = next((r for r in records if r.revision == request.to_revision), None)
        if target is None or target.document is None:
            what = "does not exist" if target is None else "is a deletion"
            with_content = [r.revision for r in records if r.document is not None]
            await _abort(
                context, grpc.StatusCode.FAILED_PRECONDITION,
                f"to_revision: revision {request.to_revision} of {namespace}/{request.name} "
                f"{what}; revisions with content: {with_content}",
            )
        try:
            # Re-validate: the old content must still be a valid spec today,
            # with the other documents of the namespace as they are now.
            restored = parse_document_mapping(
                dict(target.document), f"{namespace}/{request.name}@{target.revision}"
            )
            warnings = await self._check([restored], context)
        except SpecValidationError as e:
            await context.abort_with_status(violations_status(e.violations, e.warnings))
            raise AssertionError("unreachable") from e
        expected = request.expected_revision if request.HasField("expected_revision") else None
        write = SpecWrite(
            namespace=namespace, name=request.name, yaml=target.yaml, document=target.document,
            digest=target.digest, expected_revision=expected, action=RevisionAction.ROLLBACK,
            rolled_back_to=target.revision,
        )
        previous, previous_digest = await self._guard(
            context, lambda: self._live(namespace, request.name)
        )
        (result,) = await self._guard(context, lambda: self._store.apply([write]))
        log_event(log, logging.INFO, "spec rolled back", namespace=namespace, name=request.name,
                  to_revision=target.revision, revision=result.revision, changed=result.changed)
        if result.changed:
            await self._audit.record(spec_entry(
                principal(context), AuditAction.SPEC_ROLLBACK, namespace, request.name,
                describe_spec(previous, previous_digest),
                describe_spec(result.revision, target.digest),
                detail=f"content of revision {target.revision}",
            ))
        return spec_pb2.RollbackSpecResponse(
            spec=spec_pb2.AppliedSpec(namespace=namespace, name=request.name,
                                      revision=result.revision, changed=result.changed),
            warnings=[violation_to_proto(w) for w in warnings],
        )

    async def ResolvePolicies(
        self, request: spec_pb2.ResolvePoliciesRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> spec_pb2.ResolvePoliciesResponse:
        if not request.app_id:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "app_id: required")
        resolved, _ = await self._guard(
            context, lambda: self._hub.resolve(_namespace(request.namespace), request.app_id)
        )
        return spec_pb2.ResolvePoliciesResponse(policies=resolved)


def _source_names(request: spec_pb2.ApplySpecRequest) -> str:
    """What the apply was read from, for logs and the audit log."""
    if request.files:
        return ", ".join(f.source_name or "<request>" for f in request.files)
    return request.source_name or "<request>"


def _parse_texts(texts: list[tuple[str, str]]) -> list[ParsedDocument]:
    """Every document of every (source, YAML text); one SpecValidationError with
    the errors (and warnings) of all of them when any has an error."""
    documents: list[ParsedDocument] = []
    errors: list[Violation] = []
    warnings: list[Violation] = []
    for source, text in texts:
        if len(text.encode()) > MAX_SPEC_BYTES:
            errors.append(Violation(
                source, 0, 0, "", f"spec is larger than the {MAX_SPEC_BYTES} bytes accepted"
            ))
            continue
        try:
            parsed = parse_documents(text, source)
        except SpecValidationError as e:
            errors.extend(e.violations)
            warnings.extend(e.warnings)
            continue
        documents.extend(parsed)
        warnings.extend(w for d in parsed for w in d.warnings)
    if errors:
        raise SpecValidationError(errors, warnings)
    return documents
