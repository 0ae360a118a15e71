import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AppInstance(_message.Message):
    __slots__ = ("instance_id", "address")
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    instance_id: str
    address: str
    def __init__(self, instance_id: _Optional[str] = ..., address: _Optional[str] = ...) -> None: ...

class RegisterInstanceRequest(_message.Message):
    __slots__ = ("namespace", "app_id", "instance", "ttl")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_FIELD_NUMBER: _ClassVar[int]
    TTL_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    app_id: str
    instance: AppInstance
    ttl: _duration_pb2.Duration
    def __init__(self, namespace: _Optional[str] = ..., app_id: _Optional[str] = ..., instance: _Optional[_Union[AppInstance, _Mapping]] = ..., ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RegisterInstanceResponse(_message.Message):
    __slots__ = ("ttl",)
    TTL_FIELD_NUMBER: _ClassVar[int]
    ttl: _duration_pb2.Duration
    def __init__(self, ttl: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class DeregisterInstanceRequest(_message.Message):
    __slots__ = ("namespace", "app_id", "instance_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    app_id: str
    instance_id: str
    def __init__(self, namespace: _Optional[str] = ..., app_id: _Optional[str] = ..., instance_id: _Optional[str] = ...) -> None: ...

class DeregisterInstanceResponse(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    def __init__(self, removed: _Optional[bool] = ...) -> None: ...

class ResolveAppRequest(_message.Message):
    __slots__ = ("namespace", "app_id", "caller_app_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    APP_ID_FIELD_NUMBER: _ClassVar[int]
    CALLER_APP_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    app_id: str
    caller_app_id: str
    def __init__(self, namespace: _Optional[str] = ..., app_id: _Optional[str] = ..., caller_app_id: _Optional[str] = ...) -> None: ...

class ResolveAppResponse(_message.Message):
    __slots__ = ("instances",)
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[AppInstance]
    def __init__(self, instances: _Optional[_Iterable[_Union[AppInstance, _Mapping]]] = ...) -> None: ...
