from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TranslateRequest(_message.Message):
    __slots__ = ("prompt", "model", "app", "request_id")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    model: str
    app: str
    request_id: str
    def __init__(self, prompt: _Optional[str] = ..., model: _Optional[str] = ..., app: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class TranslateResponse(_message.Message):
    __slots__ = ("preference", "model", "calibrated", "fallback", "latency_ms", "request_id", "failure")
    PREFERENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    FALLBACK_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    preference: _containers.RepeatedScalarFieldContainer[float]
    model: str
    calibrated: bool
    fallback: bool
    latency_ms: float
    request_id: str
    failure: str
    def __init__(self, preference: _Optional[_Iterable[float]] = ..., model: _Optional[str] = ..., calibrated: _Optional[bool] = ..., fallback: _Optional[bool] = ..., latency_ms: _Optional[float] = ..., request_id: _Optional[str] = ..., failure: _Optional[str] = ...) -> None: ...

class TranslateBatchRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[TranslateRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[TranslateRequest, _Mapping]]] = ...) -> None: ...

class TranslateBatchResponse(_message.Message):
    __slots__ = ("responses",)
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.RepeatedCompositeFieldContainer[TranslateResponse]
    def __init__(self, responses: _Optional[_Iterable[_Union[TranslateResponse, _Mapping]]] = ...) -> None: ...

class ReportOutcomeRequest(_message.Message):
    __slots__ = ("prompt", "preference", "reward", "app", "request_id")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    PREFERENCE_FIELD_NUMBER: _ClassVar[int]
    REWARD_FIELD_NUMBER: _ClassVar[int]
    APP_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    preference: _containers.RepeatedScalarFieldContainer[float]
    reward: float
    app: str
    request_id: str
    def __init__(self, prompt: _Optional[str] = ..., preference: _Optional[_Iterable[float]] = ..., reward: _Optional[float] = ..., app: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ReportOutcomeResponse(_message.Message):
    __slots__ = ("memory_size",)
    MEMORY_SIZE_FIELD_NUMBER: _ClassVar[int]
    memory_size: int
    def __init__(self, memory_size: _Optional[int] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("id", "parameters", "fee", "metrics", "is_default", "family", "artefact")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    IS_DEFAULT_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    ARTEFACT_FIELD_NUMBER: _ClassVar[int]
    id: str
    parameters: int
    fee: float
    metrics: _containers.ScalarMap[str, float]
    is_default: bool
    family: str
    artefact: str
    def __init__(self, id: _Optional[str] = ..., parameters: _Optional[int] = ..., fee: _Optional[float] = ..., metrics: _Optional[_Mapping[str, float]] = ..., is_default: _Optional[bool] = ..., family: _Optional[str] = ..., artefact: _Optional[str] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...
