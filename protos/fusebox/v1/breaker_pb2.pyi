import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from fusebox.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BreakerState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BREAKER_STATE_UNSPECIFIED: _ClassVar[BreakerState]
    BREAKER_STATE_CLOSED: _ClassVar[BreakerState]
    BREAKER_STATE_OPEN: _ClassVar[BreakerState]
    BREAKER_STATE_HALF_OPEN: _ClassVar[BreakerState]

class BreakerOverride(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BREAKER_OVERRIDE_UNSPECIFIED: _ClassVar[BreakerOverride]
    BREAKER_OVERRIDE_FORCE_OPEN: _ClassVar[BreakerOverride]
    BREAKER_OVERRIDE_FORCE_CLOSED: _ClassVar[BreakerOverride]
    BREAKER_OVERRIDE_DISABLED: _ClassVar[BreakerOverride]

class TransitionCause(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TRANSITION_CAUSE_UNSPECIFIED: _ClassVar[TransitionCause]
    TRANSITION_CAUSE_TRIP: _ClassVar[TransitionCause]
    TRANSITION_CAUSE_TIMEOUT: _ClassVar[TransitionCause]
    TRANSITION_CAUSE_PROBE_SUCCESS: _ClassVar[TransitionCause]
    TRANSITION_CAUSE_PROBE_FAILURE: _ClassVar[TransitionCause]
    TRANSITION_CAUSE_OVERRIDE: _ClassVar[TransitionCause]
    TRANSITION_CAUSE_RESET: _ClassVar[TransitionCause]
    TRANSITION_CAUSE_POLICY_CHANGE: _ClassVar[TransitionCause]
BREAKER_STATE_UNSPECIFIED: BreakerState
BREAKER_STATE_CLOSED: BreakerState
BREAKER_STATE_OPEN: BreakerState
BREAKER_STATE_HALF_OPEN: BreakerState
BREAKER_OVERRIDE_UNSPECIFIED: BreakerOverride
BREAKER_OVERRIDE_FORCE_OPEN: BreakerOverride
BREAKER_OVERRIDE_FORCE_CLOSED: BreakerOverride
BREAKER_OVERRIDE_DISABLED: BreakerOverride
TRANSITION_CAUSE_UNSPECIFIED: TransitionCause
TRANSITION_CAUSE_TRIP: TransitionCause
TRANSITION_CAUSE_TIMEOUT: TransitionCause
TRANSITION_CAUSE_PROBE_SUCCESS: TransitionCause
TRANSITION_CAUSE_PROBE_FAILURE: TransitionCause
TRANSITION_CAUSE_OVERRIDE: TransitionCause
TRANSITION_CAUSE_RESET: TransitionCause
TRANSITION_CAUSE_POLICY_CHANGE: TransitionCause

class BreakerCounts(_message.Message):
    __slots__ = ("requests", "total_successes", "total_failures", "consecutive_successes", "consecutive_failures")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SUCCESSES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FAILURES_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_SUCCESSES_FIELD_NUMBER: _ClassVar[int]
    CONSECUTIVE_FAILURES_FIELD_NUMBER: _ClassVar[int]
    requests: int
    total_successes: int
    total_failures: int
    consecutive_successes: int
    consecutive_failures: int
    def __init__(self, requests: _Optional[int] = ..., total_successes: _Optional[int] = ..., total_failures: _Optional[int] = ..., consecutive_successes: _Optional[int] = ..., consecutive_failures: _Optional[int] = ...) -> None: ...

class BreakerTransition(_message.Message):
    __slots__ = ("from_state", "to_state", "cause", "time", "generation", "instance_id", "detail")
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    from_state: BreakerState
    to_state: BreakerState
    cause: TransitionCause
    time: _timestamp_pb2.Timestamp
    generation: int
    instance_id: str
    detail: str
    def __init__(self, from_state: _Optional[_Union[BreakerState, str]] = ..., to_state: _Optional[_Union[BreakerState, str]] = ..., cause: _Optional[_Union[TransitionCause, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., generation: _Optional[int] = ..., instance_id: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class OverrideInfo(_message.Message):
    __slots__ = ("override", "reason", "expire_time", "set_by")
    OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    SET_BY_FIELD_NUMBER: _ClassVar[int]
    override: BreakerOverride
    reason: str
    expire_time: _timestamp_pb2.Timestamp
    set_by: str
    def __init__(self, override: _Optional[_Union[BreakerOverride, str]] = ..., reason: _Optional[str] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., set_by: _Optional[str] = ...) -> None: ...

class Breaker(_message.Message):
    __slots__ = ("key", "display_name", "state", "counts", "generation", "open_until", "override", "policy", "recent_transitions", "active_leases", "failing_instances", "failing_instance_count", "reporting_instance_count")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    OPEN_UNTIL_FIELD_NUMBER: _ClassVar[int]
    OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    RECENT_TRANSITIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_LEASES_FIELD_NUMBER: _ClassVar[int]
    FAILING_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    FAILING_INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    REPORTING_INSTANCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    key: _policy_pb2.BreakerKey
    display_name: str
    state: BreakerState
    counts: BreakerCounts
    generation: int
    open_until: _timestamp_pb2.Timestamp
    override: OverrideInfo
    policy: _policy_pb2.CircuitBreakerPolicy
    recent_transitions: _containers.RepeatedCompositeFieldContainer[BreakerTransition]
    active_leases: int
    failing_instances: _containers.RepeatedScalarFieldContainer[str]
    failing_instance_count: int
    reporting_instance_count: int
    def __init__(self, key: _Optional[_Union[_policy_pb2.BreakerKey, _Mapping]] = ..., display_name: _Optional[str] = ..., state: _Optional[_Union[BreakerState, str]] = ..., counts: _Optional[_Union[BreakerCounts, _Mapping]] = ..., generation: _Optional[int] = ..., open_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., override: _Optional[_Union[OverrideInfo, _Mapping]] = ..., policy: _Optional[_Union[_policy_pb2.CircuitBreakerPolicy, _Mapping]] = ..., recent_transitions: _Optional[_Iterable[_Union[BreakerTransition, _Mapping]]] = ..., active_leases: _Optional[int] = ..., failing_instances: _Optional[_Iterable[str]] = ..., failing_instance_count: _Optional[int] = ..., reporting_instance_count: _Optional[int] = ...) -> None: ...

class ListBreakersRequest(_message.Message):
    __slots__ = ("namespace", "app_id", "state")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    app_id: str
    state: BreakerState
    def __init__(self, namespace: _Optional[str] = ..., app_id: _Optional[str] = ..., state: _Optional[_Union[BreakerState, str]] = ...) -> None: ...

class ListBreakersResponse(_message.Message):
    __slots__ = ("breakers", "target_overrides")
    BREAKERS_FIELD_NUMBER: _ClassVar[int]
    TARGET_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    breakers: _containers.RepeatedCompositeFieldContainer[Breaker]
    target_overrides: _containers.RepeatedCompositeFieldContainer[TargetOverride]
    def __init__(self, breakers: _Optional[_Iterable[_Union[Breaker, _Mapping]]] = ..., target_overrides: _Optional[_Iterable[_Union[TargetOverride, _Mapping]]] = ...) -> None: ...

class TargetOverride(_message.Message):
    __slots__ = ("target", "override")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    target: _policy_pb2.BreakerKey
    override: OverrideInfo
    def __init__(self, target: _Optional[_Union[_policy_pb2.BreakerKey, _Mapping]] = ..., override: _Optional[_Union[OverrideInfo, _Mapping]] = ...) -> None: ...

class GetBreakerRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: _policy_pb2.BreakerKey
    def __init__(self, key: _Optional[_Union[_policy_pb2.BreakerKey, _Mapping]] = ...) -> None: ...

class GetBreakerResponse(_message.Message):
    __slots__ = ("breaker",)
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    breaker: Breaker
    def __init__(self, breaker: _Optional[_Union[Breaker, _Mapping]] = ...) -> None: ...

class WatchBreakersRequest(_message.Message):
    __slots__ = ("namespace", "app_id", "from_revision", "mark_synced")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_REVISION_FIELD_NUMBER: _ClassVar[int]
    MARK_SYNCED_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    app_id: str
    from_revision: str
    mark_synced: bool
    def __init__(self, namespace: _Optional[str] = ..., app_id: _Optional[str] = ..., from_revision: _Optional[str] = ..., mark_synced: _Optional[bool] = ...) -> None: ...

class WatchBreakersResponse(_message.Message):
    __slots__ = ("revision", "snapshot", "breaker", "transition", "synced")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    TRANSITION_FIELD_NUMBER: _ClassVar[int]
    SYNCED_FIELD_NUMBER: _ClassVar[int]
    revision: str
    snapshot: bool
    breaker: Breaker
    transition: BreakerTransition
    synced: bool
    def __init__(self, revision: _Optional[str] = ..., snapshot: _Optional[bool] = ..., breaker: _Optional[_Union[Breaker, _Mapping]] = ..., transition: _Optional[_Union[BreakerTransition, _Mapping]] = ..., synced: _Optional[bool] = ...) -> None: ...

class SetOverrideRequest(_message.Message):
    __slots__ = ("key", "override", "reason", "ttl", "all_methods")
    KEY_FIELD_NUMBER: _ClassVar[int]
    OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    ALL_METHODS_FIELD_NUMBER: _ClassVar[int]
    key: _policy_pb2.BreakerKey
    override: BreakerOverride
    reason: str
    ttl: _duration_pb2.Duration
    all_methods: bool
    def __init__(self, key: _Optional[_Union[_policy_pb2.BreakerKey, _Mapping]] = ..., override: _Optional[_Union[BreakerOverride, str]] = ..., reason: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., all_methods: _Optional[bool] = ...) -> None: ...

class SetOverrideResponse(_message.Message):
    __slots__ = ("breaker", "target_override", "breakers")
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    TARGET_OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    BREAKERS_FIELD_NUMBER: _ClassVar[int]
    breaker: Breaker
    target_override: TargetOverride
    breakers: _containers.RepeatedCompositeFieldContainer[Breaker]
    def __init__(self, breaker: _Optional[_Union[Breaker, _Mapping]] = ..., target_override: _Optional[_Union[TargetOverride, _Mapping]] = ..., breakers: _Optional[_Iterable[_Union[Breaker, _Mapping]]] = ...) -> None: ...

class ResetBreakerRequest(_message.Message):
    __slots__ = ("key", "reason")
    KEY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    key: _policy_pb2.BreakerKey
    reason: str
    def __init__(self, key: _Optional[_Union[_policy_pb2.BreakerKey, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class ResetBreakerResponse(_message.Message):
    __slots__ = ("breaker",)
    BREAKER_FIELD_NUMBER: _ClassVar[int]
    breaker: Breaker
    def __init__(self, breaker: _Optional[_Union[Breaker, _Mapping]] = ...) -> None: ...
