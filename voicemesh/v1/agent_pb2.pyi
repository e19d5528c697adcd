from voicemesh.v1 import avatar_pb2 as _avatar_pb2
from voicemesh.v1 import common_pb2 as _common_pb2
from voicemesh.v1 import llm_pb2 as _llm_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AgentState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AGENT_STATE_UNSPECIFIED: _ClassVar[AgentState]
    AGENT_STATE_LISTENING: _ClassVar[AgentState]
    AGENT_STATE_THINKING: _ClassVar[AgentState]
    AGENT_STATE_SPEAKING: _ClassVar[AgentState]
AGENT_STATE_UNSPECIFIED: AgentState
AGENT_STATE_LISTENING: AgentState
AGENT_STATE_THINKING: AgentState
AGENT_STATE_SPEAKING: AgentState

class AgentServiceDescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentServiceDescribeResponse(_message.Message):
    __slots__ = ("description",)
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    description: _common_pb2.ServiceDescription
    def __init__(self, description: _Optional[_Union[_common_pb2.ServiceDescription, _Mapping]] = ...) -> None: ...

class ModelSpec(_message.Message):
    __slots__ = ("descriptor", "backend", "speed")
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    descriptor: str
    backend: _common_pb2.BackendOptions
    speed: float
    def __init__(self, descriptor: _Optional[str] = ..., backend: _Optional[_Union[_common_pb2.BackendOptions, _Mapping]] = ..., speed: _Optional[float] = ...) -> None: ...

class ModelChoice(_message.Message):
    __slots__ = ("candidates",)
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[ModelSpec]
    def __init__(self, candidates: _Optional[_Iterable[_Union[ModelSpec, _Mapping]]] = ...) -> None: ...

class TurnDetection(_message.Message):
    __slots__ = ("min_endpointing_delay_ms", "max_endpointing_delay_ms")
    MIN_ENDPOINTING_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_ENDPOINTING_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    min_endpointing_delay_ms: int
    max_endpointing_delay_ms: int
    def __init__(self, min_endpointing_delay_ms: _Optional[int] = ..., max_endpointing_delay_ms: _Optional[int] = ...) -> None: ...

class InterruptionSettings(_message.Message):
    __slots__ = ("enabled", "min_duration_ms", "false_interruption_timeout_ms")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    MIN_DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    FALSE_INTERRUPTION_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    min_duration_ms: int
    false_interruption_timeout_ms: int
    def __init__(self, enabled: _Optional[bool] = ..., min_duration_ms: _Optional[int] = ..., false_interruption_timeout_ms: _Optional[int] = ...) -> None: ...

class SessionConfig(_message.Message):
    __slots__ = ("instructions", "stt", "llm", "tts", "realtime", "input_sample_rate_hz", "output_sample_rate_hz", "turn_detection", "interruption", "tools", "first_result_timeout_ms", "tool_choice", "avatar", "reply_limits")
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    STT_FIELD_NUMBER: _ClassVar[int]
    LLM_FIELD_NUMBER: _ClassVar[int]
    TTS_FIELD_NUMBER: _ClassVar[int]
    REALTIME_FIELD_NUMBER: _ClassVar[int]
    INPUT_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    TURN_DETECTION_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTION_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    FIRST_RESULT_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    TOOL_CHOICE_FIELD_NUMBER: _ClassVar[int]
    AVATAR_FIELD_NUMBER: _ClassVar[int]
    REPLY_LIMITS_FIELD_NUMBER: _ClassVar[int]
    instructions: str
    stt: ModelChoice
    llm: ModelChoice
    tts: ModelChoice
    realtime: ModelChoice
    input_sample_rate_hz: int
    output_sample_rate_hz: int
    turn_detection: TurnDetection
    interruption: InterruptionSettings
    tools: _containers.RepeatedCompositeFieldContainer[_llm_pb2.Tool]
    first_result_timeout_ms: int
    tool_choice: _llm_pb2.ToolChoice
    avatar: AvatarChoice
    reply_limits: ReplyLimits
    def __init__(self, instructions: _Optional[str] = ..., stt: _Optional[_Union[ModelChoice, _Mapping]] = ..., llm: _Optional[_Union[ModelChoice, _Mapping]] = ..., tts: _Optional[_Union[ModelChoice, _Mapping]] = ..., realtime: _Optional[_Union[ModelChoice, _Mapping]] = ..., input_sample_rate_hz: _Optional[int] = ..., output_sample_rate_hz: _Optional[int] = ..., turn_detection: _Optional[_Union[TurnDetection, _Mapping]] = ..., interruption: _Optional[_Union[InterruptionSettings, _Mapping]] = ..., tools: _Optional[_Iterable[_Union[_llm_pb2.Tool, _Mapping]]] = ..., first_result_timeout_ms: _Optional[int] = ..., tool_choice: _Optional[_Union[_llm_pb2.ToolChoice, _Mapping]] = ..., avatar: _Optional[_Union[AvatarChoice, _Mapping]] = ..., reply_limits: _Optional[_Union[ReplyLimits, _Mapping]] = ...) -> None: ...

class AvatarChoice(_message.Message):
    __slots__ = ("avatar", "width", "height", "fps", "encoding", "backend")
    AVATAR_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    avatar: str
    width: int
    height: int
    fps: int
    encoding: str
    backend: _common_pb2.BackendOptions
    def __init__(self, avatar: _Optional[str] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., fps: _Optional[int] = ..., encoding: _Optional[str] = ..., backend: _Optional[_Union[_common_pb2.BackendOptions, _Mapping]] = ...) -> None: ...

class ReplyLimits(_message.Message):
    __slots__ = ("max_tokens", "max_seconds", "allow_repetition")
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_SECONDS_FIELD_NUMBER: _ClassVar[int]
    ALLOW_REPETITION_FIELD_NUMBER: _ClassVar[int]
    max_tokens: int
    max_seconds: float
    allow_repetition: bool
    def __init__(self, max_tokens: _Optional[int] = ..., max_seconds: _Optional[float] = ..., allow_repetition: _Optional[bool] = ...) -> None: ...

class UpdateModels(_message.Message):
    __slots__ = ("stt", "llm", "tts", "realtime", "instructions", "avatar")
    STT_FIELD_NUMBER: _ClassVar[int]
    LLM_FIELD_NUMBER: _ClassVar[int]
    TTS_FIELD_NUMBER: _ClassVar[int]
    REALTIME_FIELD_NUMBER: _ClassVar[int]
    INSTRUCTIONS_FIELD_NUMBER: _ClassVar[int]
    AVATAR_FIELD_NUMBER: _ClassVar[int]
    stt: ModelChoice
    llm: ModelChoice
    tts: ModelChoice
    realtime: ModelChoice
    instructions: str
    avatar: AvatarChoice
    def __init__(self, stt: _Optional[_Union[ModelChoice, _Mapping]] = ..., llm: _Optional[_Union[ModelChoice, _Mapping]] = ..., tts: _Optional[_Union[ModelChoice, _Mapping]] = ..., realtime: _Optional[_Union[ModelChoice, _Mapping]] = ..., instructions: _Optional[str] = ..., avatar: _Optional[_Union[AvatarChoice, _Mapping]] = ...) -> None: ...

class Interrupt(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Say(_message.Message):
    __slots__ = ("text", "add_to_history")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    ADD_TO_HISTORY_FIELD_NUMBER: _ClassVar[int]
    text: str
    add_to_history: bool
    def __init__(self, text: _Optional[str] = ..., add_to_history: _Optional[bool] = ...) -> None: ...

class ToolResult(_message.Message):
    __slots__ = ("call_id", "output")
    CALL_ID_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    call_id: str
    output: str
    def __init__(self, call_id: _Optional[str] = ..., output: _Optional[str] = ...) -> None: ...

class SessionRequest(_message.Message):
    __slots__ = ("config", "audio", "text", "update_models", "interrupt", "say", "tool_result")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MODELS_FIELD_NUMBER: _ClassVar[int]
    INTERRUPT_FIELD_NUMBER: _ClassVar[int]
    SAY_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESULT_FIELD_NUMBER: _ClassVar[int]
    config: SessionConfig
    audio: bytes
    text: str
    update_models: UpdateModels
    interrupt: Interrupt
    say: Say
    tool_result: ToolResult
    def __init__(self, config: _Optional[_Union[SessionConfig, _Mapping]] = ..., audio: _Optional[bytes] = ..., text: _Optional[str] = ..., update_models: _Optional[_Union[UpdateModels, _Mapping]] = ..., interrupt: _Optional[_Union[Interrupt, _Mapping]] = ..., say: _Optional[_Union[Say, _Mapping]] = ..., tool_result: _Optional[_Union[ToolResult, _Mapping]] = ...) -> None: ...

class SessionStarted(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class UserTranscript(_message.Message):
    __slots__ = ("turn_id", "text", "final")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    turn_id: int
    text: str
    final: bool
    def __init__(self, turn_id: _Optional[int] = ..., text: _Optional[str] = ..., final: _Optional[bool] = ...) -> None: ...

class AgentText(_message.Message):
    __slots__ = ("turn_id", "delta")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    turn_id: int
    delta: str
    def __init__(self, turn_id: _Optional[int] = ..., delta: _Optional[str] = ...) -> None: ...

class AgentAudio(_message.Message):
    __slots__ = ("turn_id", "audio", "sample_rate_hz")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    turn_id: int
    audio: bytes
    sample_rate_hz: int
    def __init__(self, turn_id: _Optional[int] = ..., audio: _Optional[bytes] = ..., sample_rate_hz: _Optional[int] = ...) -> None: ...

class AgentVideo(_message.Message):
    __slots__ = ("turn_id", "audio_offset_samples", "frame")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIO_OFFSET_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    turn_id: int
    audio_offset_samples: int
    frame: _avatar_pb2.VideoFrame
    def __init__(self, turn_id: _Optional[int] = ..., audio_offset_samples: _Optional[int] = ..., frame: _Optional[_Union[_avatar_pb2.VideoFrame, _Mapping]] = ...) -> None: ...

class AvatarStopped(_message.Message):
    __slots__ = ("avatar", "code", "message")
    AVATAR_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    avatar: str
    code: str
    message: str
    def __init__(self, avatar: _Optional[str] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class AgentStateChanged(_message.Message):
    __slots__ = ("state", "turn_id")
    STATE_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    state: AgentState
    turn_id: int
    def __init__(self, state: _Optional[_Union[AgentState, str]] = ..., turn_id: _Optional[int] = ...) -> None: ...

class AgentTurnDone(_message.Message):
    __slots__ = ("turn_id", "text", "interrupted")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    turn_id: int
    text: str
    interrupted: bool
    def __init__(self, turn_id: _Optional[int] = ..., text: _Optional[str] = ..., interrupted: _Optional[bool] = ...) -> None: ...

class TurnMetrics(_message.Message):
    __slots__ = ("turn_id", "end_of_utterance_delay_ms", "stt_final_latency_ms", "llm_ttft_ms", "tts_ttfb_ms", "voice_to_voice_ms", "stt_model", "llm_model", "tts_model", "fallbacks", "reply_cut", "reply_tokens")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    END_OF_UTTERANCE_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    STT_FINAL_LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    LLM_TTFT_MS_FIELD_NUMBER: _ClassVar[int]
    TTS_TTFB_MS_FIELD_NUMBER: _ClassVar[int]
    VOICE_TO_VOICE_MS_FIELD_NUMBER: _ClassVar[int]
    STT_MODEL_FIELD_NUMBER: _ClassVar[int]
    LLM_MODEL_FIELD_NUMBER: _ClassVar[int]
    TTS_MODEL_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    REPLY_CUT_FIELD_NUMBER: _ClassVar[int]
    REPLY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    turn_id: int
    end_of_utterance_delay_ms: float
    stt_final_latency_ms: float
    llm_ttft_ms: float
    tts_ttfb_ms: float
    voice_to_voice_ms: float
    stt_model: str
    llm_model: str
    tts_model: str
    fallbacks: _containers.RepeatedScalarFieldContainer[str]
    reply_cut: str
    reply_tokens: int
    def __init__(self, turn_id: _Optional[int] = ..., end_of_utterance_delay_ms: _Optional[float] = ..., stt_final_latency_ms: _Optional[float] = ..., llm_ttft_ms: _Optional[float] = ..., tts_ttfb_ms: _Optional[float] = ..., voice_to_voice_ms: _Optional[float] = ..., stt_model: _Optional[str] = ..., llm_model: _Optional[str] = ..., tts_model: _Optional[str] = ..., fallbacks: _Optional[_Iterable[str]] = ..., reply_cut: _Optional[str] = ..., reply_tokens: _Optional[int] = ...) -> None: ...

class UsageReport(_message.Message):
    __slots__ = ("turn_id", "service", "usage")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    turn_id: int
    service: str
    usage: _common_pb2.Usage
    def __init__(self, turn_id: _Optional[int] = ..., service: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ...) -> None: ...

class SessionError(_message.Message):
    __slots__ = ("turn_id", "code", "message", "detail")
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    turn_id: int
    code: str
    message: str
    detail: _common_pb2.ErrorDetail
    def __init__(self, turn_id: _Optional[int] = ..., code: _Optional[str] = ..., message: _Optional[str] = ..., detail: _Optional[_Union[_common_pb2.ErrorDetail, _Mapping]] = ...) -> None: ...

class SessionDraining(_message.Message):
    __slots__ = ("seconds_left",)
    SECONDS_LEFT_FIELD_NUMBER: _ClassVar[int]
    seconds_left: float
    def __init__(self, seconds_left: _Optional[float] = ...) -> None: ...

class SessionResponse(_message.Message):
    __slots__ = ("started", "user_transcript", "agent_text", "agent_audio", "state", "tool_call", "metrics", "usage", "error", "turn_done", "draining", "agent_video", "avatar_stopped")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    USER_TRANSCRIPT_FIELD_NUMBER: _ClassVar[int]
    AGENT_TEXT_FIELD_NUMBER: _ClassVar[int]
    AGENT_AUDIO_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TURN_DONE_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    AGENT_VIDEO_FIELD_NUMBER: _ClassVar[int]
    AVATAR_STOPPED_FIELD_NUMBER: _ClassVar[int]
    started: SessionStarted
    user_transcript: UserTranscript
    agent_text: AgentText
    agent_audio: AgentAudio
    state: AgentStateChanged
    tool_call: _llm_pb2.ToolCall
    metrics: TurnMetrics
    usage: UsageReport
    error: SessionError
    turn_done: AgentTurnDone
    draining: SessionDraining
    agent_video: AgentVideo
    avatar_stopped: AvatarStopped
    def __init__(self, started: _Optional[_Union[SessionStarted, _Mapping]] = ..., user_transcript: _Optional[_Union[UserTranscript, _Mapping]] = ..., agent_text: _Optional[_Union[AgentText, _Mapping]] = ..., agent_audio: _Optional[_Union[AgentAudio, _Mapping]] = ..., state: _Optional[_Union[AgentStateChanged, _Mapping]] = ..., tool_call: _Optional[_Union[_llm_pb2.ToolCall, _Mapping]] = ..., metrics: _Optional[_Union[TurnMetrics, _Mapping]] = ..., usage: _Optional[_Union[UsageReport, _Mapping]] = ..., error: _Optional[_Union[SessionError, _Mapping]] = ..., turn_done: _Optional[_Union[AgentTurnDone, _Mapping]] = ..., draining: _Optional[_Union[SessionDraining, _Mapping]] = ..., agent_video: _Optional[_Union[AgentVideo, _Mapping]] = ..., avatar_stopped: _Optional[_Union[AvatarStopped, _Mapping]] = ...) -> None: ...
