from voicemesh.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TtsServiceDescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TtsServiceDescribeResponse(_message.Message):
    __slots__ = ("description",)
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    description: _common_pb2.ServiceDescription
    def __init__(self, description: _Optional[_Union[_common_pb2.ServiceDescription, _Mapping]] = ...) -> None: ...

class SynthesisConfig(_message.Message):
    __slots__ = ("voice", "sample_rate_hz", "speed", "backend")
    VOICE_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    SPEED_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    voice: str
    sample_rate_hz: int
    speed: float
    backend: _common_pb2.BackendOptions
    def __init__(self, voice: _Optional[str] = ..., sample_rate_hz: _Optional[int] = ..., speed: _Optional[float] = ..., backend: _Optional[_Union[_common_pb2.BackendOptions, _Mapping]] = ...) -> None: ...

class SynthesizeRequest(_message.Message):
    __slots__ = ("config", "text", "flush", "cancel")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    FLUSH_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    config: SynthesisConfig
    text: str
    flush: _common_pb2.Flush
    cancel: _common_pb2.Cancel
    def __init__(self, config: _Optional[_Union[SynthesisConfig, _Mapping]] = ..., text: _Optional[str] = ..., flush: _Optional[_Union[_common_pb2.Flush, _Mapping]] = ..., cancel: _Optional[_Union[_common_pb2.Cancel, _Mapping]] = ...) -> None: ...

class AudioChunk(_message.Message):
    __slots__ = ("audio", "segment_id", "char_start", "char_end", "offset_samples", "segment_offset_samples", "sample_rate_hz")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CHAR_START_FIELD_NUMBER: _ClassVar[int]
    CHAR_END_FIELD_NUMBER: _ClassVar[int]
    OFFSET_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_OFFSET_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    audio: bytes
    segment_id: int
    char_start: int
    char_end: int
    offset_samples: int
    segment_offset_samples: int
    sample_rate_hz: int
    def __init__(self, audio: _Optional[bytes] = ..., segment_id: _Optional[int] = ..., char_start: _Optional[int] = ..., char_end: _Optional[int] = ..., offset_samples: _Optional[int] = ..., segment_offset_samples: _Optional[int] = ..., sample_rate_hz: _Optional[int] = ...) -> None: ...

class SegmentDone(_message.Message):
    __slots__ = ("segment_id", "text", "char_start", "char_end", "samples", "words")
    SEGMENT_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CHAR_START_FIELD_NUMBER: _ClassVar[int]
    CHAR_END_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    segment_id: int
    text: str
    char_start: int
    char_end: int
    samples: int
    words: _containers.RepeatedCompositeFieldContainer[WordSpan]
    def __init__(self, segment_id: _Optional[int] = ..., text: _Optional[str] = ..., char_start: _Optional[int] = ..., char_end: _Optional[int] = ..., samples: _Optional[int] = ..., words: _Optional[_Iterable[_Union[WordSpan, _Mapping]]] = ...) -> None: ...

class WordSpan(_message.Message):
    __slots__ = ("word", "char_start", "char_end", "start_samples", "end_samples")
    WORD_FIELD_NUMBER: _ClassVar[int]
    CHAR_START_FIELD_NUMBER: _ClassVar[int]
    CHAR_END_FIELD_NUMBER: _ClassVar[int]
    START_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    END_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    word: str
    char_start: int
    char_end: int
    start_samples: int
    end_samples: int
    def __init__(self, word: _Optional[str] = ..., char_start: _Optional[int] = ..., char_end: _Optional[int] = ..., start_samples: _Optional[int] = ..., end_samples: _Optional[int] = ...) -> None: ...

class SynthesisCancelled(_message.Message):
    __slots__ = ("dropped_characters",)
    DROPPED_CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    dropped_characters: int
    def __init__(self, dropped_characters: _Optional[int] = ...) -> None: ...

class SynthesizeResponse(_message.Message):
    __slots__ = ("audio", "segment_done", "cancelled", "usage")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    SEGMENT_DONE_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    audio: AudioChunk
    segment_done: SegmentDone
    cancelled: SynthesisCancelled
    usage: _common_pb2.Usage
    def __init__(self, audio: _Optional[_Union[AudioChunk, _Mapping]] = ..., segment_done: _Optional[_Union[SegmentDone, _Mapping]] = ..., cancelled: _Optional[_Union[SynthesisCancelled, _Mapping]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ...) -> None: ...
