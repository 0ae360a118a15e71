import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from fusebox.v1 import breaker_pb2 as _breaker_pb2
from fusebox.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BreakerMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BREAKER_MODE_UNSPECIFIED: _ClassVar[BreakerMode]
    BREAKER_MODE_LOCAL: _ClassVar[BreakerMode]
    BREAKER_MODE_CLUSTER: _ClassVar[BreakerMode]
BREAKER_MODE_UNSPECIFIED: BreakerMode
BREAKER_MODE_LOCAL: BreakerMode
BREAKER_MODE_CLUSTER: BreakerMode

class ConnectRequest(_message.Message):
    __slots__ = ("hello", "policy_ack", "report", "interest", "breaker_acks")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    POLICY_ACK_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    INTEREST_FIELD_NUMBER: _ClassVar[int]
    BREAKER_ACKS_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    policy_ack: PolicyAck
    report: OutcomeReport
    interest: BreakerInterest
    breaker_acks: BreakerAcks
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., policy_ack: _Optional[_Union[PolicyAck, _Mapping]] = ..., report: _Optional[_Union[OutcomeReport, _Mapping]] = ..., interest: _Optional[_Union[BreakerInterest, _Mapping]] = ..., breaker_acks: _Optional[_Union[BreakerAcks, _Mapping]] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("namespace", "app_id", "instance_id", "last_policy_digest", "agent_version")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_POLICY_DIGEST_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    app_id: str
    instance_id: str
    last_policy_digest: str
    agent_version: str
    def __init__(self, namespace: _Optional[str] = ..., app_id: _Optional[str] = ..., instance_id: _Optional[str] = ..., last_policy_digest: _Optional[str] = ..., agent_version: _Optional[str] = ...) -> None: ...

class PolicyAck(_message.Message):
    __slots__ = ("digest", "accepted", "error")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    digest: str
    accepted: bool
    error: str
    def __init__(self, digest: _Optional[str] = ..., accepted: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class BreakerOutcomes(_message.Message):
    __slots__ = ("key", "runs", "generation", "lease_id", "rejected")
    KEY_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    key: _policy_pb2.BreakerKey
    runs: _containers.RepeatedScalarFieldContainer[int]
    generation: int
    lease_id: str
    rejected: int
    def __init__(self, key: _Optional[_Union[_policy_pb2.BreakerKey, _Mapping]] = ..., runs: _Optional[_Iterable[int]] = ..., generation: _Optional[int] = ..., lease_id: _Optional[str] = ..., rejected: _Optional[int] = ...) -> None: ...

class OutcomeReport(_message.Message):
    __slots__ = ("breakers", "sequence", "budgets", "share_acks")
    BREAKERS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    SHARE_ACKS_FIELD_NUMBER: _ClassVar[int]
    breakers: _containers.RepeatedCompositeFieldContainer[BreakerOutcomes]
    sequence: int
    budgets: _containers.RepeatedCompositeFieldContainer[BudgetUsage]
    share_acks: _containers.RepeatedCompositeFieldContainer[BudgetShareAck]
    def __init__(self, breakers: _Optional[_Iterable[_Union[BreakerOutcomes, _Mapping]]] = ..., sequence: _Optional[int] = ..., budgets: _Optional[_Iterable[_Union[BudgetUsage, _Mapping]]] = ..., share_acks: _Optional[_Iterable[_Union[BudgetShareAck, _Mapping]]] = ...) -> None: ...

class BudgetUsage(_message.Message):
    __slots__ = ("key", "interval", "admitted", "refused", "first_attempts")
    KEY_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    FIRST_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    key: _policy_pb2.BudgetKey
    interval: _duration_pb2.Duration
    admitted: int
    refused: int
    first_attempts: int
    def __init__(self, key: _Optional[_Union[_policy_pb2.BudgetKey, _Mapping]] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., admitted: _Optional[int] = ..., refused: _Optional[int] = ..., first_attempts: _Optional[int] = ...) -> None: ...

class BudgetShareAck(_message.Message):
    __slots__ = ("key", "generation")
    KEY_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    key: _policy_pb2.BudgetKey
    generation: int
    def __init__(self, key: _Optional[_Union[_policy_pb2.BudgetKey, _Mapping]] = ..., generation: _Optional[int] = ...) -> None: ...

class BreakerInterest(_message.Message):
    __slots__ = ("add", "remove", "acks_updates")
    ADD_FIELD_NUMBER: _ClassVar[int]
    REMOVE_FIELD_NUMBER: _ClassVar[int]
    ACKS_UPDATES_FIELD_NUMBER: _ClassVar[int]
    add: _containers.RepeatedCompositeFieldContainer[_policy_pb2.BreakerKey]
    remove: _containers.RepeatedCompositeFieldContainer[_policy_pb2.BreakerKey]
    acks_updates: bool
    def __init__(self, add: _Optional[_Iterable[_Union[_policy_pb2.BreakerKey, _Mapping]]] = ..., remove: _Optional[_Iterable[_Union[_policy_pb2.BreakerKey, _Mapping]]] = ..., acks_updates: _Optional[bool] = ...) -> None: ...

class BreakerAck(_message.Message):
    __slots__ = ("key", "generation")
    KEY_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    key: _policy_pb2.BreakerKey
    generation: int
    def __init__(self, key: _Optional[_Union[_policy_pb2.BreakerKey, _Mapping]] = ..., generation: _Optional[int] = ...) -> None: ...

class BreakerAcks(_message.Message):
    __slots__ = ("acks",)
    ACKS_FIELD_NUMBER: _ClassVar[int]
    acks: _containers.RepeatedCompositeFieldContainer[BreakerAck]
    def __init__(self, acks: _Optional[_Iterable[_Union[BreakerAck, _Mapping]]] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("snapshot", "breaker_update", "mode", "report_rejected", "budget_shares")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    BREAKER_UPDATE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    REPORT_REJECTED_FIELD_NUMBER: _ClassVar[int]
    BUDGET_SHARES_FIELD_NUMBER: _ClassVar[int]
    snapshot: PolicySnapshot
    breaker_update: BreakerUpdate
    mode: ModeChange
    report_rejected: ReportRejected
    budget_shares: BudgetShares
    def __init__(self, snapshot: _Optional[_Union[PolicySnapshot, _Mapping]] = ..., breaker_update: _Optional[_Union[BreakerUpdate, _Mapping]] = ..., mode: _Optional[_Union[ModeChange, _Mapping]] = ..., report_rejected: _Optional[_Union[ReportRejected, _Mapping]] = ..., budget_shares: _Optional[_Union[BudgetShares, _Mapping]] = ...) -> None: ...

class PolicySnapshot(_message.Message):
    __slots__ = ("policies", "store_revision", "control_plane_id")
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    STORE_REVISION_FIELD_NUMBER: _ClassVar[int]
    CONTROL_PLANE_ID_FIELD_NUMBER: _ClassVar[int]
    policies: _policy_pb2.ResolvedPolicies
    store_revision: int
    control_plane_id: str
    def __init__(self, policies: _Optional[_Union[_policy_pb2.ResolvedPolicies, _Mapping]] = ..., store_revision: _Optional[int] = ..., control_plane_id: _Optional[str] = ...) -> None: ...

class BreakerUpdate(_message.Message):
    __slots__ = ("key", "state", "generation", "open_remaining", "override", "cause", "time")
    KEY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    OPEN_REMAINING_FIELD_NUMBER: _ClassVar[int]
    OVERRIDE_FIELD_NUMBER: _ClassVar[int]
    CAUSE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    key: _policy_pb2.BreakerKey
    state: _breaker_pb2.BreakerState
    generation: int
    open_remaining: _duration_pb2.Duration
    override: _breaker_pb2.BreakerOverride
    cause: _breaker_pb2.TransitionCause
    time: _timestamp_pb2.Timestamp
    def __init__(self, key: _Optional[_Union[_policy_pb2.BreakerKey, _Mapping]] = ..., state: _Optional[_Union[_breaker_pb2.BreakerState, str]] = ..., generation: _Optional[int] = ..., open_remaining: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., override: _Optional[_Union[_breaker_pb2.BreakerOverride, str]] = ..., cause: _Optional[_Union[_breaker_pb2.TransitionCause, str]] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class BudgetShares(_message.Message):
    __slots__ = ("shares",)
    SHARES_FIELD_NUMBER: _ClassVar[int]
    shares: _containers.RepeatedCompositeFieldContainer[BudgetShare]
    def __init__(self, shares: _Optional[_Iterable[_Union[BudgetShare, _Mapping]]] = ...) -> None: ...

class BudgetShare(_message.Message):
    __slots__ = ("key", "share", "fleet_size", "lease", "generation")
    KEY_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    FLEET_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    key: _policy_pb2.BudgetKey
    share: float
    fleet_size: int
    lease: _duration_pb2.Duration
    generation: int
    def __init__(self, key: _Optional[_Union[_policy_pb2.BudgetKey, _Mapping]] = ..., share: _Optional[float] = ..., fleet_size: _Optional[int] = ..., lease: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., generation: _Optional[int] = ...) -> None: ...

class ModeChange(_message.Message):
    __slots__ = ("mode", "reason")
    MODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    mode: BreakerMode
    reason: str
    def __init__(self, mode: _Optional[_Union[BreakerMode, str]] = ..., reason: _Optional[str] = ...) -> None: ...

class ReportRejected(_message.Message):
    __slots__ = ("key", "reason")
    KEY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    key: _policy_pb2.BreakerKey
    reason: str
    def __init__(self, key: _Optional[_Union[_policy_pb2.BreakerKey, _Mapping]] = ..., reason: _Optional[str] = ...) -> None: ...

class AcquireProbeLeaseRequest(_message.Message):
    __slots__ = ("instance_id", "key", "generation")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    key: _policy_pb2.BreakerKey
    generation: int
    def __init__(self, instance_id: _Optional[str] = ..., key: _Optional[_Union[_policy_pb2.BreakerKey, _Mapping]] = ..., generation: _Optional[int] = ...) -> None: ...

class AcquireProbeLeaseResponse(_message.Message):
    __slots__ = ("granted", "lease_id", "ttl", "state", "generation")
    GRANTED_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    granted: bool
    lease_id: str
    ttl: _duration_pb2.Duration
    state: _breaker_pb2.BreakerState
    generation: int
    def __init__(self, granted: _Optional[bool] = ..., lease_id: _Optional[str] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., state: _Optional[_Union[_breaker_pb2.BreakerState, str]] = ..., generation: _Optional[int] = ...) -> None: ...

class CachedPolicies(_message.Message):
    __slots__ = ("control_plane_id", "server", "namespace", "app_id", "written_at", "policies", "budget_fleet_sizes")
    CONTROL_PLANE_ID_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    WRITTEN_AT_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FLEET_SIZES_FIELD_NUMBER: _ClassVar[int]
    control_plane_id: str
    server: str
    namespace: str
    app_id: str
    written_at: _timestamp_pb2.Timestamp
    policies: _policy_pb2.ResolvedPolicies
    budget_fleet_sizes: _containers.RepeatedCompositeFieldContainer[BudgetFleetSize]
    def __init__(self, control_plane_id: _Optional[str] = ..., server: _Optional[str] = ..., namespace: _Optional[str] = ..., app_id: _Optional[str] = ..., written_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., policies: _Optional[_Union[_policy_pb2.ResolvedPolicies, _Mapping]] = ..., budget_fleet_sizes: _Optional[_Iterable[_Union[BudgetFleetSize, _Mapping]]] = ...) -> None: ...

class BudgetFleetSize(_message.Message):
    __slots__ = ("key", "fleet_size")
    KEY_FIELD_NUMBER: _ClassVar[int]
    FLEET_SIZE_FIELD_NUMBER: _ClassVar[int]
    key: _policy_pb2.BudgetKey
    fleet_size: int
    def __init__(self, key: _Optional[_Union[_policy_pb2.BudgetKey, _Mapping]] = ..., fleet_size: _Optional[int] = ...) -> None: ...
