from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Usage(_message.Message):
    __slots__ = ("audio_seconds_in", "audio_seconds_out", "input_tokens", "output_tokens", "cached_tokens", "characters", "model", "video_seconds_out")
    AUDIO_SECONDS_IN_FIELD_NUMBER: _ClassVar[int]
    AUDIO_SECONDS_OUT_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VIDEO_SECONDS_OUT_FIELD_NUMBER: _ClassVar[int]
    audio_seconds_in: float
    audio_seconds_out: float
    input_tokens: int
    output_tokens: int
    cached_tokens: int
    characters: int
    model: str
    video_seconds_out: float
    def __init__(self, audio_seconds_in: _Optional[float] = ..., audio_seconds_out: _Optional[float] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cached_tokens: _Optional[int] = ..., characters: _Optional[int] = ..., model: _Optional[str] = ..., video_seconds_out: _Optional[float] = ...) -> None: ...

class Capabilities(_message.Message):
    __slots__ = ("streaming", "interim_results", "word_times", "tool_calls", "alignment", "server_vad", "truncate", "text_only_output")
    STREAMING_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    WORD_TIMES_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    ALIGNMENT_FIELD_NUMBER: _ClassVar[int]
    SERVER_VAD_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    TEXT_ONLY_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    streaming: bool
    interim_results: bool
    word_times: bool
    tool_calls: bool
    alignment: bool
    server_vad: bool
    truncate: bool
    text_only_output: bool
    def __init__(self, streaming: _Optional[bool] = ..., interim_results: _Optional[bool] = ..., word_times: _Optional[bool] = ..., tool_calls: _Optional[bool] = ..., alignment: _Optional[bool] = ..., server_vad: _Optional[bool] = ..., truncate: _Optional[bool] = ..., text_only_output: _Optional[bool] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("descriptor", "provider", "model", "languages", "sample_rates_hz", "voices", "context_tokens", "capabilities", "description", "size_bytes", "loaded")
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LANGUAGES_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATES_HZ_FIELD_NUMBER: _ClassVar[int]
    VOICES_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOADED_FIELD_NUMBER: _ClassVar[int]
    descriptor: str
    provider: str
    model: str
    languages: _containers.RepeatedScalarFieldContainer[str]
    sample_rates_hz: _containers.RepeatedScalarFieldContainer[int]
    voices: _containers.RepeatedScalarFieldContainer[str]
    context_tokens: int
    capabilities: Capabilities
    description: str
    size_bytes: int
    loaded: bool
    def __init__(self, descriptor: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., languages: _Optional[_Iterable[str]] = ..., sample_rates_hz: _Optional[_Iterable[int]] = ..., voices: _Optional[_Iterable[str]] = ..., context_tokens: _Optional[int] = ..., capabilities: _Optional[_Union[Capabilities, _Mapping]] = ..., description: _Optional[str] = ..., size_bytes: _Optional[int] = ..., loaded: _Optional[bool] = ...) -> None: ...

class ServiceDescription(_message.Message):
    __slots__ = ("service", "version", "models", "min_sample_rate_hz", "max_sample_rate_hz", "providers")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    PROVIDERS_FIELD_NUMBER: _ClassVar[int]
    service: str
    version: str
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    min_sample_rate_hz: int
    max_sample_rate_hz: int
    providers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, service: _Optional[str] = ..., version: _Optional[str] = ..., models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ..., min_sample_rate_hz: _Optional[int] = ..., max_sample_rate_hz: _Optional[int] = ..., providers: _Optional[_Iterable[str]] = ...) -> None: ...

class BackendOptions(_message.Message):
    __slots__ = ("base_url", "api_key", "timeout_s", "extra")
    class ExtraEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    BASE_URL_FIELD_NUMBER: _ClassVar[int]
    API_KEY_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    EXTRA_FIELD_NUMBER: _ClassVar[int]
    base_url: str
    api_key: str
    timeout_s: float
    extra: _containers.ScalarMap[str, str]
    def __init__(self, base_url: _Optional[str] = ..., api_key: _Optional[str] = ..., timeout_s: _Optional[float] = ..., extra: _Optional[_Mapping[str, str]] = ...) -> None: ...

class ErrorDetail(_message.Message):
    __slots__ = ("reason", "retryable", "model", "known")
    REASON_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KNOWN_FIELD_NUMBER: _ClassVar[int]
    reason: str
    retryable: bool
    model: str
    known: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, reason: _Optional[str] = ..., retryable: _Optional[bool] = ..., model: _Optional[str] = ..., known: _Optional[_Iterable[str]] = ...) -> None: ...

class Cancel(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Flush(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
