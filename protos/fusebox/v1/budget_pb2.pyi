import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from fusebox.v1 import policy_pb2 as _policy_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListBudgetsRequest(_message.Message):
    __slots__ = ("namespace",)
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    def __init__(self, namespace: _Optional[str] = ...) -> None: ...

class ListBudgetsResponse(_message.Message):
    __slots__ = ("budgets",)
    BUDGETS_FIELD_NUMBER: _ClassVar[int]
    budgets: _containers.RepeatedCompositeFieldContainer[Budget]
    def __init__(self, budgets: _Optional[_Iterable[_Union[Budget, _Mapping]]] = ...) -> None: ...

class GetBudgetRequest(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: _policy_pb2.BudgetKey
    def __init__(self, key: _Optional[_Union[_policy_pb2.BudgetKey, _Mapping]] = ...) -> None: ...

class GetBudgetResponse(_message.Message):
    __slots__ = ("budget",)
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    budget: Budget
    def __init__(self, budget: _Optional[_Union[Budget, _Mapping]] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("key", "display_name", "rate_limit", "retry_budget", "fleet_rate", "admitted_per_second", "refused_per_second", "first_attempts_per_second", "use", "fleet_size", "free", "generation", "lease", "updated_at", "instances")
    KEY_FIELD_NUMBER: _ClassVar[int]
    DISPLAY_NAME_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RETRY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    FLEET_RATE_FIELD_NUMBER: _ClassVar[int]
    ADMITTED_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    REFUSED_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    FIRST_ATTEMPTS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    USE_FIELD_NUMBER: _ClassVar[int]
    FLEET_SIZE_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    LEASE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    key: _policy_pb2.BudgetKey
    display_name: str
    rate_limit: _policy_pb2.RateLimitPolicy
    retry_budget: _policy_pb2.RetryBudgetPolicy
    fleet_rate: float
    admitted_per_second: float
    refused_per_second: float
    first_attempts_per_second: float
    use: float
    fleet_size: int
    free: float
    generation: int
    lease: _duration_pb2.Duration
    updated_at: _timestamp_pb2.Timestamp
    instances: _containers.RepeatedCompositeFieldContainer[BudgetInstance]
    def __init__(self, key: _Optional[_Union[_policy_pb2.BudgetKey, _Mapping]] = ..., display_name: _Optional[str] = ..., rate_limit: _Optional[_Union[_policy_pb2.RateLimitPolicy, _Mapping]] = ..., retry_budget: _Optional[_Union[_policy_pb2.RetryBudgetPolicy, _Mapping]] = ..., fleet_rate: _Optional[float] = ..., admitted_per_second: _Optional[float] = ..., refused_per_second: _Optional[float] = ..., first_attempts_per_second: _Optional[float] = ..., use: _Optional[float] = ..., fleet_size: _Optional[int] = ..., free: _Optional[float] = ..., generation: _Optional[int] = ..., lease: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., instances: _Optional[_Iterable[_Union[BudgetInstance, _Mapping]]] = ...) -> None: ...

class BudgetInstance(_message.Message):
    __slots__ = ("instance_id", "share", "held", "generation", "acked_generation", "demand_per_second", "seen_at", "left_at", "held_until", "reports_usage")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SHARE_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    ACKED_GENERATION_FIELD_NUMBER: _ClassVar[int]
    DEMAND_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    SEEN_AT_FIELD_NUMBER: _ClassVar[int]
    LEFT_AT_FIELD_NUMBER: _ClassVar[int]
    HELD_UNTIL_FIELD_NUMBER: _ClassVar[int]
    REPORTS_USAGE_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    share: float
    held: float
    generation: int
    acked_generation: int
    demand_per_second: float
    seen_at: _timestamp_pb2.Timestamp
    left_at: _timestamp_pb2.Timestamp
    held_until: _timestamp_pb2.Timestamp
    reports_usage: bool
    def __init__(self, instance_id: _Optional[str] = ..., share: _Optional[float] = ..., held: _Optional[float] = ..., generation: _Optional[int] = ..., acked_generation: _Optional[int] = ..., demand_per_second: _Optional[float] = ..., seen_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., left_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., held_until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reports_usage: _Optional[bool] = ...) -> None: ...
