import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from fusebox.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RevisionAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    REVISION_ACTION_UNSPECIFIED: _ClassVar[RevisionAction]
    REVISION_ACTION_APPLY: _ClassVar[RevisionAction]
    REVISION_ACTION_DELETE: _ClassVar[RevisionAction]
    REVISION_ACTION_ROLLBACK: _ClassVar[RevisionAction]

class ViolationSeverity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIOLATION_SEVERITY_UNSPECIFIED: _ClassVar[ViolationSeverity]
    VIOLATION_SEVERITY_ERROR: _ClassVar[ViolationSeverity]
    VIOLATION_SEVERITY_WARNING: _ClassVar[ViolationSeverity]
REVISION_ACTION_UNSPECIFIED: RevisionAction
REVISION_ACTION_APPLY: RevisionAction
REVISION_ACTION_DELETE: RevisionAction
REVISION_ACTION_ROLLBACK: RevisionAction
VIOLATION_SEVERITY_UNSPECIFIED: ViolationSeverity
VIOLATION_SEVERITY_ERROR: ViolationSeverity
VIOLATION_SEVERITY_WARNING: ViolationSeverity

class Spec(_message.Message):
    __slots__ = ("namespace", "name", "revision", "yaml", "document", "update_time", "digest")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    revision: int
    yaml: str
    document: _struct_pb2.Struct
    update_time: _timestamp_pb2.Timestamp
    digest: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., revision: _Optional[int] = ..., yaml: _Optional[str] = ..., document: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., digest: _Optional[str] = ...) -> None: ...

class SpecRevision(_message.Message):
    __slots__ = ("revision", "action", "create_time", "digest", "yaml", "rolled_back_to")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    YAML_FIELD_NUMBER: _ClassVar[int]
    ROLLED_BACK_TO_FIELD_NUMBER: _ClassVar[int]
    revision: int
    action: RevisionAction
    create_time: _timestamp_pb2.Timestamp
    digest: str
    yaml: str
    rolled_back_to: int
    def __init__(self, revision: _Optional[int] = ..., action: _Optional[_Union[RevisionAction, str]] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., digest: _Optional[str] = ..., yaml: _Optional[str] = ..., rolled_back_to: _Optional[int] = ...) -> None: ...

class SpecViolation(_message.Message):
    __slots__ = ("source", "line", "column", "field_path", "message", "severity")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    COLUMN_FIELD_NUMBER: _ClassVar[int]
    FIELD_PATH_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    source: str
    line: int
    column: int
    field_path: str
    message: str
    severity: ViolationSeverity
    def __init__(self, source: _Optional[str] = ..., line: _Optional[int] = ..., column: _Optional[int] = ..., field_path: _Optional[str] = ..., message: _Optional[str] = ..., severity: _Optional[_Union[ViolationSeverity, str]] = ...) -> None: ...

class SpecViolations(_message.Message):
    __slots__ = ("violations",)
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    violations: _containers.RepeatedCompositeFieldContainer[SpecViolation]
    def __init__(self, violations: _Optional[_Iterable[_Union[SpecViolation, _Mapping]]] = ...) -> None: ...

class SpecFile(_message.Message):
    __slots__ = ("yaml", "source_name")
    YAML_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    yaml: str
    source_name: str
    def __init__(self, yaml: _Optional[str] = ..., source_name: _Optional[str] = ...) -> None: ...

class ApplySpecRequest(_message.Message):
    __slots__ = ("yaml", "document", "source_name", "expected_revision", "dry_run", "files")
    YAML_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_NAME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    yaml: str
    document: _struct_pb2.Struct
    source_name: str
    expected_revision: int
    dry_run: bool
    files: _containers.RepeatedCompositeFieldContainer[SpecFile]
    def __init__(self, yaml: _Optional[str] = ..., document: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., source_name: _Optional[str] = ..., expected_revision: _Optional[int] = ..., dry_run: _Optional[bool] = ..., files: _Optional[_Iterable[_Union[SpecFile, _Mapping]]] = ...) -> None: ...

class AppliedSpec(_message.Message):
    __slots__ = ("namespace", "name", "revision", "changed")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    revision: int
    changed: bool
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., revision: _Optional[int] = ..., changed: _Optional[bool] = ...) -> None: ...

class ApplySpecResponse(_message.Message):
    __slots__ = ("specs", "warnings")
    SPECS_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    specs: _containers.RepeatedCompositeFieldContainer[AppliedSpec]
    warnings: _containers.RepeatedCompositeFieldContainer[SpecViolation]
    def __init__(self, specs: _Optional[_Iterable[_Union[AppliedSpec, _Mapping]]] = ..., warnings: _Optional[_Iterable[_Union[SpecViolation, _Mapping]]] = ...) -> None: ...

class GetSpecRequest(_message.Message):
    __slots__ = ("namespace", "name", "revision")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    revision: int
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., revision: _Optional[int] = ...) -> None: ...

class GetSpecResponse(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: Spec
    def __init__(self, spec: _Optional[_Union[Spec, _Mapping]] = ...) -> None: ...

class ListSpecsRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class ListSpecsResponse(_message.Message):
    __slots__ = ("specs", "store_revision")
    SPECS_FIELD_NUMBER: _ClassVar[int]
    STORE_REVISION_FIELD_NUMBER: _ClassVar[int]
    specs: _containers.RepeatedCompositeFieldContainer[Spec]
    store_revision: int
    def __init__(self, specs: _Optional[_Iterable[_Union[Spec, _Mapping]]] = ..., store_revision: _Optional[int] = ...) -> None: ...

class DeleteSpecRequest(_message.Message):
    __slots__ = ("namespace", "name", "expected_revision")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    expected_revision: int
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., expected_revision: _Optional[int] = ...) -> None: ...

class DeleteSpecResponse(_message.Message):
    __slots__ = ("revision",)
    REVISION_FIELD_NUMBER: _ClassVar[int]
    revision: int
    def __init__(self, revision: _Optional[int] = ...) -> None: ...

class ListSpecRevisionsRequest(_message.Message):
    __slots__ = ("namespace", "name")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ...) -> None: ...

class ListSpecRevisionsResponse(_message.Message):
    __slots__ = ("revisions",)
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    revisions: _containers.RepeatedCompositeFieldContainer[SpecRevision]
    def __init__(self, revisions: _Optional[_Iterable[_Union[SpecRevision, _Mapping]]] = ...) -> None: ...

class RollbackSpecRequest(_message.Message):
    __slots__ = ("namespace", "name", "to_revision", "expected_revision")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    TO_REVISION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    to_revision: int
    expected_revision: int
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., to_revision: _Optional[int] = ..., expected_revision: _Optional[int] = ...) -> None: ...

class RollbackSpecResponse(_message.Message):
    __slots__ = ("spec", "warnings")
    SPEC_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    spec: AppliedSpec
    warnings: _containers.RepeatedCompositeFieldContainer[SpecViolation]
    def __init__(self, spec: _Optional[_Union[AppliedSpec, _Mapping]] = ..., warnings: _Optional[_Iterable[_Union[SpecViolation, _Mapping]]] = ...) -> None: ...

class ResolvePoliciesRequest(_message.Message):
    __slots__ = ("namespace", "app_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    app_id: str
    def __init__(self, namespace: _Optional[str] = ..., app_id: _Optional[str] = ...) -> None: ...

class ResolvePoliciesResponse(_message.Message):
    __slots__ = ("policies",)
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    policies: _policy_pb2.ResolvedPolicies
    def __init__(self, policies: _Optional[_Union[_policy_pb2.ResolvedPolicies, _Mapping]] = ...) -> None: ...
