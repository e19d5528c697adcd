from voicemesh.v1 import common_pb2 as _common_pb2
from voicemesh.v1 import llm_pb2 as _llm_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RealtimeServiceDescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RealtimeServiceDescribeResponse(_message.Message):
    __slots__ = ("description",)
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    description: _common_pb2.ServiceDescription
    def __init__(self, description: _Optional[_Union[_common_pb2.ServiceDescription, _Mapping]] = ...) -> None: ...

class ServerVad(_message.Message):
    __slots__ = ("threshold", "prefix_padding_ms", "silence_duration_ms", "create_response", "interrupt_response")
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    PREFIX_PADDING_MS_FIELD_NUMBER: _ClassVar[int]
    SILENCE_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    CREATE_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    INTERRUPT_RESPONSE_FIELD_NUMBER: _ClassVar[int]
    threshold: float
    prefix_padding_ms: int
    silence_duration_ms: int
    create_response: bool
    interrupt_response: bool
    def __init__(self, threshold: _Optional[float] = ..., prefix_padding_ms: _Optional[int] = ..., silence_duration_ms: _Optional[int] = ..., create_response: _Optional[bool] = ..., interrupt_response: _Optional[bool] = ...) -> None: ...

class RealtimeSessionConfig(_message.Message):
    __slots__ = ("model", "instructions", "voice", "input_sample_rate_hz", "output_sample_rate_hz", "turn_detection", "modalities", "tools", "backend")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    VOICE_FIELD_NUMBER: _ClassVar[int]
    INPUT_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    TURN_DETECTION_FIELD_NUMBER: _ClassVar[int]
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    model: str
    instructions: str
    voice: str
    input_sample_rate_hz: int
    output_sample_rate_hz: int
    turn_detection: ServerVad
    modalities: _containers.RepeatedScalarFieldContainer[str]
    tools: _containers.RepeatedCompositeFieldContainer[_llm_pb2.Tool]
    backend: _common_pb2.BackendOptions
    def __init__(self, model: _Optional[str] = ..., instructions: _Optional[str] = ..., voice: _Optional[str] = ..., input_sample_rate_hz: _Optional[int] = ..., output_sample_rate_hz: _Optional[int] = ..., turn_detection: _Optional[_Union[ServerVad, _Mapping]] = ..., modalities: _Optional[_Iterable[str]] = ..., tools: _Optional[_Iterable[_Union[_llm_pb2.Tool, _Mapping]]] = ..., backend: _Optional[_Union[_common_pb2.BackendOptions, _Mapping]] = ...) -> None: ...

class InputAudioCommit(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class InputAudioClear(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ConversationItemCreate(_message.Message):
    __slots__ = ("item", "item_id")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    item: _llm_pb2.ChatMessage
    item_id: str
    def __init__(self, item: _Optional[_Union[_llm_pb2.ChatMessage, _Mapping]] = ..., item_id: _Optional[str] = ...) -> None: ...

class ResponseCreate(_message.Message):
    __slots__ = ("modalities",)
    MODALITIES_FIELD_NUMBER: _ClassVar[int]
    modalities: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, modalities: _Optional[_Iterable[str]] = ...) -> None: ...

class ResponseCancel(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ItemTruncate(_message.Message):
    __slots__ = ("item_id", "audio_end_ms")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_END_MS_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    audio_end_ms: int
    def __init__(self, item_id: _Optional[str] = ..., audio_end_ms: _Optional[int] = ...) -> None: ...

class ItemDelete(_message.Message):
    __slots__ = ("item_id",)
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    def __init__(self, item_id: _Optional[str] = ...) -> None: ...

class ConverseRequest(_message.Message):
    __slots__ = ("session_update", "input_audio_append", "input_audio_commit", "input_audio_clear", "item_create", "response_create", "response_cancel", "item_truncate", "item_delete")
    SESSION_UPDATE_FIELD_NUMBER: _ClassVar[int]
    INPUT_AUDIO_APPEND_FIELD_NUMBER: _ClassVar[int]
    INPUT_AUDIO_COMMIT_FIELD_NUMBER: _ClassVar[int]
    INPUT_AUDIO_CLEAR_FIELD_NUMBER: _ClassVar[int]
    ITEM_CREATE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CREATE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CANCEL_FIELD_NUMBER: _ClassVar[int]
    ITEM_TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    ITEM_DELETE_FIELD_NUMBER: _ClassVar[int]
    session_update: RealtimeSessionConfig
    input_audio_append: bytes
    input_audio_commit: InputAudioCommit
    input_audio_clear: InputAudioClear
    item_create: ConversationItemCreate
    response_create: ResponseCreate
    response_cancel: ResponseCancel
    item_truncate: ItemTruncate
    item_delete: ItemDelete
    def __init__(self, session_update: _Optional[_Union[RealtimeSessionConfig, _Mapping]] = ..., input_audio_append: _Optional[bytes] = ..., input_audio_commit: _Optional[_Union[InputAudioCommit, _Mapping]] = ..., input_audio_clear: _Optional[_Union[InputAudioClear, _Mapping]] = ..., item_create: _Optional[_Union[ConversationItemCreate, _Mapping]] = ..., response_create: _Optional[_Union[ResponseCreate, _Mapping]] = ..., response_cancel: _Optional[_Union[ResponseCancel, _Mapping]] = ..., item_truncate: _Optional[_Union[ItemTruncate, _Mapping]] = ..., item_delete: _Optional[_Union[ItemDelete, _Mapping]] = ...) -> None: ...

class SessionUpdated(_message.Message):
    __slots__ = ("session",)
    SESSION_FIELD_NUMBER: _ClassVar[int]
    session: RealtimeSessionConfig
    def __init__(self, session: _Optional[_Union[RealtimeSessionConfig, _Mapping]] = ...) -> None: ...

class InputSpeech(_message.Message):
    __slots__ = ("item_id", "audio_ms")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_MS_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    audio_ms: int
    def __init__(self, item_id: _Optional[str] = ..., audio_ms: _Optional[int] = ...) -> None: ...

class InputTranscription(_message.Message):
    __slots__ = ("item_id", "text", "final")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    text: str
    final: bool
    def __init__(self, item_id: _Optional[str] = ..., text: _Optional[str] = ..., final: _Optional[bool] = ...) -> None: ...

class ResponseCreated(_message.Message):
    __slots__ = ("response_id", "item_id")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    item_id: str
    def __init__(self, response_id: _Optional[str] = ..., item_id: _Optional[str] = ...) -> None: ...

class ResponseTextDelta(_message.Message):
    __slots__ = ("response_id", "item_id", "delta", "audio_transcript")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    AUDIO_TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    item_id: str
    delta: str
    audio_transcript: bool
    def __init__(self, response_id: _Optional[str] = ..., item_id: _Optional[str] = ..., delta: _Optional[str] = ..., audio_transcript: _Optional[bool] = ...) -> None: ...

class ResponseAudioDelta(_message.Message):
    __slots__ = ("response_id", "item_id", "audio")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    item_id: str
    audio: bytes
    def __init__(self, response_id: _Optional[str] = ..., item_id: _Optional[str] = ..., audio: _Optional[bytes] = ...) -> None: ...

class ResponseDone(_message.Message):
    __slots__ = ("response_id", "status", "usage", "tool_calls")
    RESPONSE_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    response_id: str
    status: str
    usage: _common_pb2.Usage
    tool_calls: _containers.RepeatedCompositeFieldContainer[_llm_pb2.ToolCall]
    def __init__(self, response_id: _Optional[str] = ..., status: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ..., tool_calls: _Optional[_Iterable[_Union[_llm_pb2.ToolCall, _Mapping]]] = ...) -> None: ...

class RealtimeError(_message.Message):
    __slots__ = ("code", "message", "detail")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    detail: _common_pb2.ErrorDetail
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., detail: _Optional[_Union[_common_pb2.ErrorDetail, _Mapping]] = ...) -> None: ...

class ItemTruncated(_message.Message):
    __slots__ = ("item_id", "audio_end_ms", "text")
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_END_MS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    audio_end_ms: int
    text: str
    def __init__(self, item_id: _Optional[str] = ..., audio_end_ms: _Optional[int] = ..., text: _Optional[str] = ...) -> None: ...

class ItemDeleted(_message.Message):
    __slots__ = ("item_id",)
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    item_id: str
    def __init__(self, item_id: _Optional[str] = ...) -> None: ...

class ConverseResponse(_message.Message):
    __slots__ = ("session_updated", "speech_started", "speech_stopped", "input_transcription", "response_created", "text_delta", "audio_delta", "response_done", "error", "item_truncated", "item_deleted")
    SESSION_UPDATED_FIELD_NUMBER: _ClassVar[int]
    SPEECH_STARTED_FIELD_NUMBER: _ClassVar[int]
    SPEECH_STOPPED_FIELD_NUMBER: _ClassVar[int]
    INPUT_TRANSCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_CREATED_FIELD_NUMBER: _ClassVar[int]
    TEXT_DELTA_FIELD_NUMBER: _ClassVar[int]
    AUDIO_DELTA_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_DONE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ITEM_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    ITEM_DELETED_FIELD_NUMBER: _ClassVar[int]
    session_updated: SessionUpdated
    speech_started: InputSpeech
    speech_stopped: InputSpeech
    input_transcription: InputTranscription
    response_created: ResponseCreated
    text_delta: ResponseTextDelta
    audio_delta: ResponseAudioDelta
    response_done: ResponseDone
    error: RealtimeError
    item_truncated: ItemTruncated
    item_deleted: ItemDeleted
    def __init__(self, session_updated: _Optional[_Union[SessionUpdated, _Mapping]] = ..., speech_started: _Optional[_Union[InputSpeech, _Mapping]] = ..., speech_stopped: _Optional[_Union[InputSpeech, _Mapping]] = ..., input_transcription: _Optional[_Union[InputTranscription, _Mapping]] = ..., response_created: _Optional[_Union[ResponseCreated, _Mapping]] = ..., text_delta: _Optional[_Union[ResponseTextDelta, _Mapping]] = ..., audio_delta: _Optional[_Union[ResponseAudioDelta, _Mapping]] = ..., response_done: _Optional[_Union[ResponseDone, _Mapping]] = ..., error: _Optional[_Union[RealtimeError, _Mapping]] = ..., item_truncated: _Optional[_Union[ItemTruncated, _Mapping]] = ..., item_deleted: _Optional[_Union[ItemDeleted, _Mapping]] = ...) -> None: ...
