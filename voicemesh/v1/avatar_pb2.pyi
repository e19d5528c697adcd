from voicemesh.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AvatarServiceDescribeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AvatarInfo(_message.Message):
    __slots__ = ("descriptor", "variants", "sizes", "min_size", "max_size", "min_fps", "max_fps", "default_fps", "encodings", "description")
    DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    VARIANTS_FIELD_NUMBER: _ClassVar[int]
    SIZES_FIELD_NUMBER: _ClassVar[int]
    MIN_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    MIN_FPS_FIELD_NUMBER: _ClassVar[int]
    MAX_FPS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FPS_FIELD_NUMBER: _ClassVar[int]
    ENCODINGS_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    descriptor: str
    variants: _containers.RepeatedScalarFieldContainer[str]
    sizes: _containers.RepeatedCompositeFieldContainer[VideoSize]
    min_size: int
    max_size: int
    min_fps: int
    max_fps: int
    default_fps: int
    encodings: _containers.RepeatedScalarFieldContainer[str]
    description: str
    def __init__(self, descriptor: _Optional[str] = ..., variants: _Optional[_Iterable[str]] = ..., sizes: _Optional[_Iterable[_Union[VideoSize, _Mapping]]] = ..., min_size: _Optional[int] = ..., max_size: _Optional[int] = ..., min_fps: _Optional[int] = ..., max_fps: _Optional[int] = ..., default_fps: _Optional[int] = ..., encodings: _Optional[_Iterable[str]] = ..., description: _Optional[str] = ...) -> None: ...

class AvatarServiceDescribeResponse(_message.Message):
    __slots__ = ("description", "avatars")
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    AVATARS_FIELD_NUMBER: _ClassVar[int]
    description: _common_pb2.ServiceDescription
    avatars: _containers.RepeatedCompositeFieldContainer[AvatarInfo]
    def __init__(self, description: _Optional[_Union[_common_pb2.ServiceDescription, _Mapping]] = ..., avatars: _Optional[_Iterable[_Union[AvatarInfo, _Mapping]]] = ...) -> None: ...

class VideoSize(_message.Message):
    __slots__ = ("width", "height")
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    width: int
    height: int
    def __init__(self, width: _Optional[int] = ..., height: _Optional[int] = ...) -> None: ...

class RenderConfig(_message.Message):
    __slots__ = ("avatar", "size", "fps", "encoding", "sample_rate_hz", "unpaced", "backend")
    AVATAR_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    FPS_FIELD_NUMBER: _ClassVar[int]
    ENCODING_FIELD_NUMBER: _ClassVar[int]
    SAMPLE_RATE_HZ_FIELD_NUMBER: _ClassVar[int]
    UNPACED_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    avatar: str
    size: VideoSize
    fps: int
    encoding: str
    sample_rate_hz: int
    unpaced: bool
    backend: _common_pb2.BackendOptions
    def __init__(self, avatar: _Optional[str] = ..., size: _Optional[_Union[VideoSize, _Mapping]] = ..., fps: _Optional[int] = ..., encoding: _Optional[str] = ..., sample_rate_hz: _Optional[int] = ..., unpaced: _Optional[bool] = ..., backend: _Optional[_Union[_common_pb2.BackendOptions, _Mapping]] = ...) -> None: ...

class AvatarAudio(_message.Message):
    __slots__ = ("audio", "offset_samples")
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    OFFSET_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    audio: bytes
    offset_samples: int
    def __init__(self, audio: _Optional[bytes] = ..., offset_samples: _Optional[int] = ...) -> None: ...

class TextSpan(_message.Message):
    __slots__ = ("text", "start_samples", "end_samples")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    START_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    END_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    text: str
    start_samples: int
    end_samples: int
    def __init__(self, text: _Optional[str] = ..., start_samples: _Optional[int] = ..., end_samples: _Optional[int] = ...) -> None: ...

class PhonemeTiming(_message.Message):
    __slots__ = ("phoneme", "start_samples", "end_samples")
    PHONEME_FIELD_NUMBER: _ClassVar[int]
    START_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    END_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    phoneme: str
    start_samples: int
    end_samples: int
    def __init__(self, phoneme: _Optional[str] = ..., start_samples: _Optional[int] = ..., end_samples: _Optional[int] = ...) -> None: ...

class ReplyEnd(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Clear(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class RenderRequest(_message.Message):
    __slots__ = ("config", "audio", "text", "phoneme", "reply_end", "clear")
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    AUDIO_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PHONEME_FIELD_NUMBER: _ClassVar[int]
    REPLY_END_FIELD_NUMBER: _ClassVar[int]
    CLEAR_FIELD_NUMBER: _ClassVar[int]
    config: RenderConfig
    audio: AvatarAudio
    text: TextSpan
    phoneme: PhonemeTiming
    reply_end: ReplyEnd
    clear: Clear
    def __init__(self, config: _Optional[_Union[RenderConfig, _Mapping]] = ..., audio: _Optional[_Union[AvatarAudio, _Mapping]] = ..., text: _Optional[_Union[TextSpan, _Mapping]] = ..., phoneme: _Optional[_Union[PhonemeTiming, _Mapping]] = ..., reply_end: _Optional[_Union[ReplyEnd, _Mapping]] = ..., clear: _Optional[_Union[Clear, _Mapping]] = ...) -> None: ...

class VideoFrame(_message.Message):
    __slots__ = ("index", "pts_samples", "audio_offset_samples", "idle", "data", "keyframe", "width", "height", "mouth_open")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    PTS_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    AUDIO_OFFSET_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    IDLE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    KEYFRAME_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    MOUTH_OPEN_FIELD_NUMBER: _ClassVar[int]
    index: int
    pts_samples: int
    audio_offset_samples: int
    idle: bool
    data: bytes
    keyframe: bool
    width: int
    height: int
    mouth_open: float
    def __init__(self, index: _Optional[int] = ..., pts_samples: _Optional[int] = ..., audio_offset_samples: _Optional[int] = ..., idle: _Optional[bool] = ..., data: _Optional[bytes] = ..., keyframe: _Optional[bool] = ..., width: _Optional[int] = ..., height: _Optional[int] = ..., mouth_open: _Optional[float] = ...) -> None: ...

class PlaybackFinished(_message.Message):
    __slots__ = ("audio_offset_samples", "pts_samples", "interrupted")
    AUDIO_OFFSET_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PTS_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    INTERRUPTED_FIELD_NUMBER: _ClassVar[int]
    audio_offset_samples: int
    pts_samples: int
    interrupted: bool
    def __init__(self, audio_offset_samples: _Optional[int] = ..., pts_samples: _Optional[int] = ..., interrupted: _Optional[bool] = ...) -> None: ...

class RenderResponse(_message.Message):
    __slots__ = ("frame", "playback_finished", "usage")
    FRAME_FIELD_NUMBER: _ClassVar[int]
    PLAYBACK_FINISHED_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    frame: VideoFrame
    playback_finished: PlaybackFinished
    usage: _common_pb2.Usage
    def __init__(self, frame: _Optional[_Union[VideoFrame, _Mapping]] = ..., playback_finished: _Optional[_Union[PlaybackFinished, _Mapping]] = ..., usage: _Optional[_Union[_common_pb2.Usage, _Mapping]] = ...) -> None: ...
