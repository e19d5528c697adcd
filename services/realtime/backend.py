"""The realtime (speech to speech) backend interface and its typed events.

A session is one ``converse`` call: it takes the session's options and an
async iterator of client events (the OpenAI Realtime client events, as plain
dataclasses) and yields server events until the client events end. State
errors that leave the session usable (truncate of an unknown item, a
response requested while one runs, commit of an empty buffer) are yielded as
``ErrorEvent``; anything fatal is raised as a ``voicemesh.errors`` exception.
Backends never import grpc; the servicer translates these dataclasses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Union

from voicemesh.backend import Backend
from voicemesh.errors import VoiceMeshError
from voicemesh.services.llm.backend import Message, Tool, ToolCall

MODALITIES = ("text", "audio")


@dataclass(frozen=True)
class ServerVad:
    """Server-side turn detection (``turn_detection.type = "server_vad"``)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 500
    create_response: bool = True
    interrupt_response: bool = True


@dataclass(frozen=True)
class SessionOptions:
    """Session settings (session.update) as plain values; rates are validated."""

    instructions: str = ""
    voice: str = ""
    input_sample_rate_hz: int = 24000
    output_sample_rate_hz: int = 24000
    turn_detection: ServerVad | None = None
    modalities: tuple[str, ...] = MODALITIES
    tools: tuple[Tool, ...] = ()


# ---- client events -------------------------------------------------------


@dataclass(frozen=True)
class SessionUpdate:
    """session.update after the first one (the model cannot change)."""

    options: SessionOptions


@dataclass(frozen=True)
class AudioAppend:
    """input_audio_buffer.append: PCM s16le mono at the input rate."""

    audio: bytes


@dataclass(frozen=True)
class AudioCommit:
    """input_audio_buffer.commit."""


@dataclass(frozen=True)
class AudioClear:
    """input_audio_buffer.clear."""


@dataclass(frozen=True)
class ItemCreate:
    """conversation.item.create; ``item_id`` is the client's id for it ("": the backend names it)."""

    message: Message
    item_id: str = ""


@dataclass(frozen=True)
class ResponseCreate:
    """response.create; empty ``modalities`` means the session's."""

    modalities: tuple[str, ...] = ()


@dataclass(frozen=True)
class ResponseCancel:
    """response.cancel."""


@dataclass(frozen=True)
class ItemTruncate:
    """conversation.item.truncate."""

    item_id: str
    audio_end_ms: int


@dataclass(frozen=True)
class ItemDelete:
    """conversation.item.delete."""

    item_id: str


ClientEvent = Union[SessionUpdate, AudioAppend, AudioCommit, AudioClear, ItemCreate, ResponseCreate,
                    ResponseCancel, ItemTruncate, ItemDelete]


# ---- server events -------------------------------------------------------


@dataclass(frozen=True)
class SessionUpdated:
    """session.updated: the settings now in force."""

    options: SessionOptions


@dataclass(frozen=True)
class SpeechStarted:
    """input_audio_buffer.speech_started."""

    item_id: str
    audio_ms: int


@dataclass(frozen=True)
class SpeechStopped:
    """input_audio_buffer.speech_stopped."""

    item_id: str
    audio_ms: int


@dataclass(frozen=True)
class InputTranscription:
    """conversation.item.input_audio_transcription.delta (``final`` False) / .completed."""

    item_id: str
    text: str
    final: bool


@dataclass(frozen=True)
class ResponseCreated:
    """response.created."""

    response_id: str
    item_id: str


@dataclass(frozen=True)
class TextDelta:
    """response.text.delta, or response.audio_transcript.delta when ``audio_transcript``."""

    response_id: str
    item_id: str
    delta: str
    audio_transcript: bool = False


@dataclass(frozen=True)
class AudioDelta:
    """response.audio.delta: PCM s16le mono at the output rate."""

    response_id: str
    item_id: str
    audio: bytes


@dataclass(frozen=True)
class Usage:
    """What one response consumed (mirrors ``voicemesh.v1.Usage``)."""

    audio_seconds_in: float = 0.0
    audio_seconds_out: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    characters: int = 0
    model: str = ""


@dataclass(frozen=True)
class ResponseDone:
    """response.done; ``status`` is completed, cancelled, incomplete or failed."""

    response_id: str
    status: str
    usage: Usage = Usage()
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class ItemTruncated:
    """conversation.item.truncated; ``text`` is the item's text after the cut, when known."""

    item_id: str
    audio_end_ms: int
    text: str = ""


@dataclass(frozen=True)
class ItemDeleted:
    """conversation.item.deleted."""

    item_id: str


@dataclass(frozen=True)
class ErrorEvent:
    """error: a non-fatal problem; the session goes on."""

    code: str
    message: str
    reason: str = ""
    retryable: bool = False
    known: tuple[str, ...] = field(default=())

    @classmethod
    def of(cls, error: VoiceMeshError) -> ErrorEvent:
        return cls(code=error.code, message=error.message, reason=error.reason, retryable=error.retryable,
                   known=tuple(error.known))


ServerEvent = Union[SessionUpdated, SpeechStarted, SpeechStopped, InputTranscription, ResponseCreated, TextDelta,
                    AudioDelta, ResponseDone, ItemTruncated, ItemDeleted, ErrorEvent]


class RealtimeBackend(Backend):
    """Interface of every realtime provider.

    ``converse`` runs one session: it yields ``SessionUpdated`` for the
    initial options, then reacts to ``events`` until they end. Closing the
    generator early (client gone) must cancel and release everything the
    session holds.
    """

    #: Voices the backend offers (Describe); empty means the provider decides.
    voices: tuple[str, ...] = ()
    #: Whether the session's ``backend`` options (base_url, api_key) mean anything to this provider;
    #: a local backend ignores them, so they must not make the service load it a second time.

    def converse(self, options: SessionOptions, events: AsyncIterator[ClientEvent], *,
                 on_unsent: Callable[[Usage], None] = lambda usage: None) -> AsyncIterator[ServerEvent]:
        """Run one session. ``on_unsent`` gets the usage the session could not report in a
        ``ResponseDone`` (a response cut off by the client leaving, input audio after the last
        response), so metering still sees it."""
        raise NotImplementedError
