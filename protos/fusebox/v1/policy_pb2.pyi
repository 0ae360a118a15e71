import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TargetKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TARGET_KIND_UNSPECIFIED: _ClassVar[TargetKind]
    TARGET_KIND_APP: _ClassVar[TargetKind]
    TARGET_KIND_ACTOR: _ClassVar[TargetKind]
    TARGET_KIND_COMPONENT: _ClassVar[TargetKind]

class ComponentDirection(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPONENT_DIRECTION_UNSPECIFIED: _ClassVar[ComponentDirection]
    COMPONENT_DIRECTION_OUTBOUND: _ClassVar[ComponentDirection]
    COMPONENT_DIRECTION_INBOUND: _ClassVar[ComponentDirection]

class BackoffKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BACKOFF_KIND_UNSPECIFIED: _ClassVar[BackoffKind]
    BACKOFF_KIND_CONSTANT: _ClassVar[BackoffKind]
    BACKOFF_KIND_EXPONENTIAL: _ClassVar[BackoffKind]

class CircuitBreakerScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CIRCUIT_BREAKER_SCOPE_UNSPECIFIED: _ClassVar[CircuitBreakerScope]
    CIRCUIT_BREAKER_SCOPE_ID: _ClassVar[CircuitBreakerScope]
    CIRCUIT_BREAKER_SCOPE_TYPE: _ClassVar[CircuitBreakerScope]
    CIRCUIT_BREAKER_SCOPE_BOTH: _ClassVar[CircuitBreakerScope]

class RateLimitScope(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RATE_LIMIT_SCOPE_UNSPECIFIED: _ClassVar[RateLimitScope]
    RATE_LIMIT_SCOPE_APP: _ClassVar[RateLimitScope]
    RATE_LIMIT_SCOPE_FLEET: _ClassVar[RateLimitScope]

class WhenExceeded(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WHEN_EXCEEDED_UNSPECIFIED: _ClassVar[WhenExceeded]
    WHEN_EXCEEDED_REJECT: _ClassVar[WhenExceeded]
    WHEN_EXCEEDED_WAIT: _ClassVar[WhenExceeded]

class BudgetKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BUDGET_KIND_UNSPECIFIED: _ClassVar[BudgetKind]
    BUDGET_KIND_RATE_LIMIT: _ClassVar[BudgetKind]
    BUDGET_KIND_RETRY_BUDGET: _ClassVar[BudgetKind]
TARGET_KIND_UNSPECIFIED: TargetKind
TARGET_KIND_APP: TargetKind
TARGET_KIND_ACTOR: TargetKind
TARGET_KIND_COMPONENT: TargetKind
COMPONENT_DIRECTION_UNSPECIFIED: ComponentDirection
COMPONENT_DIRECTION_OUTBOUND: ComponentDirection
COMPONENT_DIRECTION_INBOUND: ComponentDirection
BACKOFF_KIND_UNSPECIFIED: BackoffKind
BACKOFF_KIND_CONSTANT: BackoffKind
BACKOFF_KIND_EXPONENTIAL: BackoffKind
CIRCUIT_BREAKER_SCOPE_UNSPECIFIED: CircuitBreakerScope
CIRCUIT_BREAKER_SCOPE_ID: CircuitBreakerScope
CIRCUIT_BREAKER_SCOPE_TYPE: CircuitBreakerScope
CIRCUIT_BREAKER_SCOPE_BOTH: CircuitBreakerScope
RATE_LIMIT_SCOPE_UNSPECIFIED: RateLimitScope
RATE_LIMIT_SCOPE_APP: RateLimitScope
RATE_LIMIT_SCOPE_FLEET: RateLimitScope
WHEN_EXCEEDED_UNSPECIFIED: WhenExceeded
WHEN_EXCEEDED_REJECT: WhenExceeded
WHEN_EXCEEDED_WAIT: WhenExceeded
BUDGET_KIND_UNSPECIFIED: BudgetKind
BUDGET_KIND_RATE_LIMIT: BudgetKind
BUDGET_KIND_RETRY_BUDGET: BudgetKind

class StatusCodeRange(_message.Message):
    __slots__ = ("first", "last")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    LAST_FIELD_NUMBER: _ClassVar[int]
    first: int
    last: int
    def __init__(self, first: _Optional[int] = ..., last: _Optional[int] = ...) -> None: ...

class TimeoutPolicy(_message.Message):
    __slots__ = ("name", "duration")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    name: str
    duration: _duration_pb2.Duration
    def __init__(self, name: _Optional[str] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("name", "backoff", "duration", "max_interval", "max_retries", "http_status_codes", "grpc_status_codes", "initial_interval", "multiplier", "randomization_factor", "max_elapsed_time", "honor_retry_after")
    NAME_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    MAX_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    MAX_RETRIES_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_CODES_FIELD_NUMBER: _ClassVar[int]
    GRPC_STATUS_CODES_FIELD_NUMBER: _ClassVar[int]
    INITIAL_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    RANDOMIZATION_FACTOR_FIELD_NUMBER: _ClassVar[int]
    MAX_ELAPSED_TIME_FIELD_NUMBER: _ClassVar[int]
    HONOR_RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    name: str
    backoff: BackoffKind
    duration: _duration_pb2.Duration
    max_interval: _duration_pb2.Duration
    max_retries: int
    http_status_codes: _containers.RepeatedCompositeFieldContainer[StatusCodeRange]
    grpc_status_codes: _containers.RepeatedCompositeFieldContainer[StatusCodeRange]
    initial_interval: _duration_pb2.Duration
    multiplier: float
    randomization_factor: float
    max_elapsed_time: _duration_pb2.Duration
    honor_retry_after: bool
    def __init__(self, name: _Optional[str] = ..., backoff: _Optional[_Union[BackoffKind, str]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_retries: _Optional[int] = ..., http_status_codes: _Optional[_Iterable[_Union[StatusCodeRange, _Mapping]]] = ..., grpc_status_codes: _Optional[_Iterable[_Union[StatusCodeRange, _Mapping]]] = ..., initial_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., multiplier: _Optional[float] = ..., randomization_factor: _Optional[float] = ..., max_elapsed_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., honor_retry_after: _Optional[bool] = ...) -> None: ...

class BreakerQuorum(_message.Message):
    __slots__ = ("min_instances", "min_share")
    MIN_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    MIN_SHARE_FIELD_NUMBER: _ClassVar[int]
    min_instances: int
    min_share: float
    def __init__(self, min_instances: _Optional[int] = ..., min_share: _Optional[float] = ...) -> None: ...

class CircuitBreakerPolicy(_message.Message):
    __slots__ = ("name", "max_requests", "interval", "timeout", "trip", "quorum")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    TRIP_FIELD_NUMBER: _ClassVar[int]
    QUORUM_FIELD_NUMBER: _ClassVar[int]
    name: str
    max_requests: int
    interval: _duration_pb2.Duration
    timeout: _duration_pb2.Duration
    trip: str
    quorum: BreakerQuorum
    def __init__(self, name: _Optional[str] = ..., max_requests: _Optional[int] = ..., interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., trip: _Optional[str] = ..., quorum: _Optional[_Union[BreakerQuorum, _Mapping]] = ...) -> None: ...

class FallbackResponse(_message.Message):
    __slots__ = ("status", "headers", "body")
    class HeadersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    STATUS_FIELD_NUMBER: _ClassVar[int]
    HEADERS_FIELD_NUMBER: _ClassVar[int]
    BODY_FIELD_NUMBER: _ClassVar[int]
    status: int
    headers: _containers.ScalarMap[str, str]
    body: bytes
    def __init__(self, status: _Optional[int] = ..., headers: _Optional[_Mapping[str, str]] = ..., body: _Optional[bytes] = ...) -> None: ...

class FallbackPolicy(_message.Message):
    __slots__ = ("name", "response", "function", "http_status_codes", "grpc_status_codes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    FUNCTION_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_CODES_FIELD_NUMBER: _ClassVar[int]
    GRPC_STATUS_CODES_FIELD_NUMBER: _ClassVar[int]
    name: str
    response: FallbackResponse
    function: str
    http_status_codes: _containers.RepeatedCompositeFieldContainer[StatusCodeRange]
    grpc_status_codes: _containers.RepeatedCompositeFieldContainer[StatusCodeRange]
    def __init__(self, name: _Optional[str] = ..., response: _Optional[_Union[FallbackResponse, _Mapping]] = ..., function: _Optional[str] = ..., http_status_codes: _Optional[_Iterable[_Union[StatusCodeRange, _Mapping]]] = ..., grpc_status_codes: _Optional[_Iterable[_Union[StatusCodeRange, _Mapping]]] = ...) -> None: ...

class RateLimitPolicy(_message.Message):
    __slots__ = ("name", "limit", "period", "burst", "scope", "when_exceeded", "max_wait", "count_retries")
    NAME_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    BURST_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    WHEN_EXCEEDED_FIELD_NUMBER: _ClassVar[int]
    MAX_WAIT_FIELD_NUMBER: _ClassVar[int]
    COUNT_RETRIES_FIELD_NUMBER: _ClassVar[int]
    name: str
    limit: int
    period: _duration_pb2.Duration
    burst: int
    scope: RateLimitScope
    when_exceeded: WhenExceeded
    max_wait: _duration_pb2.Duration
    count_retries: bool
    def __init__(self, name: _Optional[str] = ..., limit: _Optional[int] = ..., period: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., burst: _Optional[int] = ..., scope: _Optional[_Union[RateLimitScope, str]] = ..., when_exceeded: _Optional[_Union[WhenExceeded, str]] = ..., max_wait: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., count_retries: _Optional[bool] = ...) -> None: ...

class RetryBudgetPolicy(_message.Message):
    __slots__ = ("name", "ratio", "window", "min_retries_per_second")
    NAME_FIELD_NUMBER: _ClassVar[int]
    RATIO_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    MIN_RETRIES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    name: str
    ratio: float
    window: _duration_pb2.Duration
    min_retries_per_second: float
    def __init__(self, name: _Optional[str] = ..., ratio: _Optional[float] = ..., window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., min_retries_per_second: _Optional[float] = ...) -> None: ...

class TargetPolicy(_message.Message):
    __slots__ = ("kind", "name", "direction", "component_type", "is_default", "timeout", "retry", "circuit_breaker", "fallback", "circuit_breaker_scope", "circuit_breaker_cache_size", "spec_namespace", "spec_name", "rate_limit", "retry_budget")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_BREAKER_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_BREAKER_SCOPE_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_BREAKER_CACHE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SPEC_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SPEC_NAME_FIELD_NUMBER: _ClassVar[int]
    RATE_LIMIT_FIELD_NUMBER: _ClassVar[int]
    RETRY_BUDGET_FIELD_NUMBER: _ClassVar[int]
    kind: TargetKind
    name: str
    direction: ComponentDirection
    component_type: str
    is_default: bool
    timeout: TimeoutPolicy
    retry: RetryPolicy
    circuit_breaker: CircuitBreakerPolicy
    fallback: FallbackPolicy
    circuit_breaker_scope: CircuitBreakerScope
    circuit_breaker_cache_size: int
    spec_namespace: str
    spec_name: str
    rate_limit: RateLimitPolicy
    retry_budget: RetryBudgetPolicy
    def __init__(self, kind: _Optional[_Union[TargetKind, str]] = ..., name: _Optional[str] = ..., direction: _Optional[_Union[ComponentDirection, str]] = ..., component_type: _Optional[str] = ..., is_default: _Optional[bool] = ..., timeout: _Optional[_Union[TimeoutPolicy, _Mapping]] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., circuit_breaker: _Optional[_Union[CircuitBreakerPolicy, _Mapping]] = ..., fallback: _Optional[_Union[FallbackPolicy, _Mapping]] = ..., circuit_breaker_scope: _Optional[_Union[CircuitBreakerScope, str]] = ..., circuit_breaker_cache_size: _Optional[int] = ..., spec_namespace: _Optional[str] = ..., spec_name: _Optional[str] = ..., rate_limit: _Optional[_Union[RateLimitPolicy, _Mapping]] = ..., retry_budget: _Optional[_Union[RetryBudgetPolicy, _Mapping]] = ...) -> None: ...

class ResolvedPolicies(_message.Message):
    __slots__ = ("namespace", "app_id", "digest", "targets", "builtin_retries")
    class BuiltinRetriesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: RetryPolicy
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[RetryPolicy, _Mapping]] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    BUILTIN_RETRIES_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    app_id: str
    digest: str
    targets: _containers.RepeatedCompositeFieldContainer[TargetPolicy]
    builtin_retries: _containers.MessageMap[str, RetryPolicy]
    def __init__(self, namespace: _Optional[str] = ..., app_id: _Optional[str] = ..., digest: _Optional[str] = ..., targets: _Optional[_Iterable[_Union[TargetPolicy, _Mapping]]] = ..., builtin_retries: _Optional[_Mapping[str, RetryPolicy]] = ...) -> None: ...

class BreakerKey(_message.Message):
    __slots__ = ("namespace", "spec", "kind", "target", "method")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    spec: str
    kind: TargetKind
    target: str
    method: str
    def __init__(self, namespace: _Optional[str] = ..., spec: _Optional[str] = ..., kind: _Optional[_Union[TargetKind, str]] = ..., target: _Optional[str] = ..., method: _Optional[str] = ...) -> None: ...

class BudgetKey(_message.Message):
    __slots__ = ("namespace", "spec", "kind", "target_kind", "target", "direction", "app_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    spec: str
    kind: BudgetKind
    target_kind: TargetKind
    target: str
    direction: ComponentDirection
    app_id: str
    def __init__(self, namespace: _Optional[str] = ..., spec: _Optional[str] = ..., kind: _Optional[_Union[BudgetKind, str]] = ..., target_kind: _Optional[_Union[TargetKind, str]] = ..., target: _Optional[str] = ..., direction: _Optional[_Union[ComponentDirection, str]] = ..., app_id: _Optional[str] = ...) -> None: ...
