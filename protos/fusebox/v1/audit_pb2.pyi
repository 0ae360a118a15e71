import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuditAction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIT_ACTION_UNSPECIFIED: _ClassVar[AuditAction]
    AUDIT_ACTION_SPEC_APPLY: _ClassVar[AuditAction]
    AUDIT_ACTION_SPEC_DELETE: _ClassVar[AuditAction]
    AUDIT_ACTION_SPEC_ROLLBACK: _ClassVar[AuditAction]
    AUDIT_ACTION_BREAKER_OVERRIDE: _ClassVar[AuditAction]
    AUDIT_ACTION_BREAKER_RESET: _ClassVar[AuditAction]

class AuditTargetKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUDIT_TARGET_KIND_UNSPECIFIED: _ClassVar[AuditTargetKind]
    AUDIT_TARGET_KIND_SPEC: _ClassVar[AuditTargetKind]
    AUDIT_TARGET_KIND_BREAKER: _ClassVar[AuditTargetKind]
AUDIT_ACTION_UNSPECIFIED: AuditAction
AUDIT_ACTION_SPEC_APPLY: AuditAction
AUDIT_ACTION_SPEC_DELETE: AuditAction
AUDIT_ACTION_SPEC_ROLLBACK: AuditAction
AUDIT_ACTION_BREAKER_OVERRIDE: AuditAction
AUDIT_ACTION_BREAKER_RESET: AuditAction
AUDIT_TARGET_KIND_UNSPECIFIED: AuditTargetKind
AUDIT_TARGET_KIND_SPEC: AuditTargetKind
AUDIT_TARGET_KIND_BREAKER: AuditTargetKind

class AuditEvent(_message.Message):
    __slots__ = ("id", "time", "actor", "action", "target_kind", "namespace", "target", "target_key", "previous", "current", "detail")
    ID_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    TARGET_KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TARGET_KEY_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    id: str
    time: _timestamp_pb2.Timestamp
    actor: str
    action: AuditAction
    target_kind: AuditTargetKind
    namespace: str
    target: str
    target_key: str
    previous: str
    current: str
    detail: str
    def __init__(self, id: _Optional[str] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor: _Optional[str] = ..., action: _Optional[_Union[AuditAction, str]] = ..., target_kind: _Optional[_Union[AuditTargetKind, str]] = ..., namespace: _Optional[str] = ..., target: _Optional[str] = ..., target_key: _Optional[str] = ..., previous: _Optional[str] = ..., current: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class ListAuditEventsRequest(_message.Message):
    __slots__ = ("since", "limit", "target_kind", "namespace", "target_contains", "actions")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TARGET_KIND_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    TARGET_CONTAINS_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    limit: int
    target_kind: AuditTargetKind
    namespace: str
    target_contains: str
    actions: _containers.RepeatedScalarFieldContainer[AuditAction]
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., limit: _Optional[int] = ..., target_kind: _Optional[_Union[AuditTargetKind, str]] = ..., namespace: _Optional[str] = ..., target_contains: _Optional[str] = ..., actions: _Optional[_Iterable[_Union[AuditAction, str]]] = ...) -> None: ...

class ListAuditEventsResponse(_message.Message):
    __slots__ = ("events",)
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ...) -> None: ...
