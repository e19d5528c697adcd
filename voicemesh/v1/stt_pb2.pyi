from voicemesh.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SttServiceDescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SttServiceDescribeResponse(_message.Message):
    __slots__ = ("description",)
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    description: _common_pb2.ServiceDescription
    def __init__(self, description: _Optional[_Union[_common_pb2.ServiceDescription, _Mapping]] = ...) -> None: ...

class Endpointing(_message.Message):
    __slots__ = ("min_silence_ms", "speech_threshold")
    MIN_SILENCE_MS_FIELD_NUMBER: _ClassVar[int]
    SPEECH_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    min_silence_ms: int
    speech_threshold: float
    def __init__(self, min_silence_ms: _Optional[int] = ..., speech_threshold: _Optional[float] = ...) -> None: ...

class RecognitionConfig(_message.Message):
    __slots__ = ("model", "language", "sample_rate_hz", "interim_results", "endpointing", "backend")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    INTERIM_RESULTS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTING_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    model: str
    language: str
    sample_rate_hz: int
    interim_results: bool
    endpointing: Endpointing
    backend: _common_pb2.BackendOptions
    def __init__(self, model: _Optional[str] = ..., language: _Optional[str] = ..., sample_rate_hz: _Optional[int] = ..., interim_results: _Optional[bool] = ..., endpointing: _Optional[_Union[Endpointing, _Mapping]] = ..., backend: _Optional[_Union[_common_pb2.BackendOptions, _Mapping]] = ...) -> None: ...

class RecognizeRequest(_message.Message):
    __slots__ = ("config", "audio")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    config: RecognitionConfig
    audio: bytes
    def __init__(self, config: _Optional[_Union[RecognitionConfig, _Mapping]] = ..., audio: _Optional[bytes] = ...) -> None: ...

class Word(_message.Message):
    __slots__ = ("word", "start_ms", "end_ms", "confidence")
    WORD_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    word: str
    start_ms: int
    end_ms: int
    confidence: float
    def __init__(self, word: _Optional[str] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., confidence: _Optional[float] = ...) -> None: ...

class Transcript(_message.Message):
    __slots__ = ("utterance_id", "text", "stable_text", "words", "confidence", "language", "start_ms", "end_ms", "end_candidate")
    UTTERANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    STABLE_TEXT_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    END_MS_FIELD_NUMBER: _ClassVar[int]
    END_CANDIDATE_FIELD_NUMBER: _ClassVar[int]
    utterance_id: int
    text: str
    stable_text: str
    words: _containers.RepeatedCompositeFieldContainer[Word]
    confidence: float
    language: str
    start_ms: int
    end_ms: int
    end_candidate: bool
    def __init__(self, utterance_id: _Optional[int] = ..., text: _Optional[str] = ..., stable_text: _Optional[str] = ..., words: _Optional[_Iterable[_Union[Word, _Mapping]]] = ..., confidence: _Optional[float] = ..., language: _Optional[str] = ..., start_ms: _Optional[int] = ..., end_ms: _Optional[int] = ..., end_candidate: _Optional[bool] = ...) -> None: ...

class SpeechStarted(_message.Message):
    __slots__ = ("utterance_id", "time_ms")
    UTTERANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    utterance_id: int
    time_ms: int
    def __init__(self, utterance_id: _Optional[int] = ..., time_ms: _Optional[int] = ...) -> None: ...

class SpeechEnded(_message.Message):
    __slots__ = ("utterance_id", "time_ms")
    UTTERANCE_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    utterance_id: int
    time_ms: int
    def __init__(self, utterance_id: _Optional[int] = ..., time_ms: _Optional[int] = ...) -> None: ...

class RecognizeResponse(_message.Message):
    __slots__ = ("speech_started", "interim", "final", "speech_ended", "usage")
    SPEECH_STARTED_FIELD_NUMBER: _ClassVar[int]
    INTERIM_FIELD_NUMBER: _ClassVar[int]
    FINAL_FIELD_NUMBER: _ClassVar[int]
    SPEECH_ENDED_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    speech_started: SpeechStarted
    interim: Transcript
    final: Transcript
    speech_ended: SpeechEnded
    usage: _common_pb2.Usage
    def __init__(self, speech_started: _Optional[_Union[SpeechStarted, _Mapping]] = ..., interim: _Optional[_Union[Transcript, _Mapping]] = ..., final: _Optional[_Union[Transcript, _Mapping]] = ..., speech_ended: _Optional[_Union[SpeechEnded, _Mapping]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ...) -> None: ...
