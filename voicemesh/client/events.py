"""Typed events of an agent session, converted from ``SessionResponse``.

Each server message becomes one small frozen dataclass whose ``type`` is an
``EventType``; code that consumes a session switches on ``event.type`` and
never touches protobuf.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from voicemesh.v1 import agent_pb2, common_pb2, llm_pb2


class EventType(enum.Enum):
    """What an event is."""

    SESSION_STARTED = "session_started"
    USER_TRANSCRIPT = "user_transcript"
    AGENT_TEXT = "agent_text"
    AGENT_AUDIO = "agent_audio"
    AGENT_STATE = "agent_state"
    TOOL_CALL = "tool_call"
    METRICS = "metrics"
    USAGE = "usage"
    ERROR = "error"
    TURN_DONE = "turn_done"
    AGENT_VIDEO = "agent_video"
    AVATAR_STOPPED = "avatar_stopped"
    DRAINING = "draining"


class AgentState(enum.Enum):
    """What the agent is doing."""

    UNSPECIFIED = 0
    LISTENING = 1
    THINKING = 2
    SPEAKING = 3


@dataclass(frozen=True)
class SessionStarted:
    """The session is ready."""

    session_id: str
    type: EventType = field(default=EventType.SESSION_STARTED, init=False)


@dataclass(frozen=True)
class UserTranscript:
    """What the user said so far (interim) or in the end (final)."""

    turn_id: int
    text: str
    final: bool
    type: EventType = field(default=EventType.USER_TRANSCRIPT, init=False)


@dataclass(frozen=True)
class AgentText:
    """A piece of the agent's reply text."""

    turn_id: int
    delta: str
    type: EventType = field(default=EventType.AGENT_TEXT, init=False)


@dataclass(frozen=True)
class AgentAudio:
    """A piece of the agent's speech, PCM s16le mono."""

    turn_id: int
    audio: bytes
    sample_rate: int
    type: EventType = field(default=EventType.AGENT_AUDIO, init=False)

    @property
    def duration_s(self) -> float:
        return len(self.audio) / 2 / self.sample_rate if self.sample_rate else 0.0


@dataclass(frozen=True)
class AgentStateChanged:
    """The agent started listening, thinking or speaking."""

    state: AgentState
    turn_id: int
    type: EventType = field(default=EventType.AGENT_STATE, init=False)


@dataclass(frozen=True)
class ToolCall:
    """The agent calls a tool; answer with ``AgentSession.send_tool_result``."""

    call_id: str
    name: str
    arguments_json: str
    type: EventType = field(default=EventType.TOOL_CALL, init=False)


@dataclass(frozen=True)
class TurnMetrics:
    """Latency of one turn in ms (0 when not measured) and the models that served it."""

    turn_id: int
    end_of_utterance_delay_ms: float
    stt_final_latency_ms: float
    llm_ttft_ms: float
    tts_ttfb_ms: float
    voice_to_voice_ms: float
    stt_model: str
    llm_model: str
    tts_model: str
    fallbacks: tuple[str, ...]
    type: EventType = field(default=EventType.METRICS, init=False)


@dataclass(frozen=True)
class Usage:
    """What one service used (see ``voicemesh.v1.Usage``)."""

    model: str = ""
    audio_seconds_in: float = 0.0
    audio_seconds_out: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    characters: int = 0


@dataclass(frozen=True)
class UsageReport:
    """Usage of one service within a turn (turn 0: the session)."""

    turn_id: int
    service: str
    usage: Usage
    type: EventType = field(default=EventType.USAGE, init=False)


@dataclass(frozen=True)
class SessionError:
    """A non-fatal error; the session goes on."""

    turn_id: int
    code: str
    message: str
    reason: str = ""
    retryable: bool = False
    model: str = ""
    known: tuple[str, ...] = ()
    type: EventType = field(default=EventType.ERROR, init=False)


@dataclass(frozen=True)
class TurnDone:
    """An agent turn ended; ``text`` is what the history keeps (cut when interrupted)."""

    turn_id: int
    text: str
    interrupted: bool
    type: EventType = field(default=EventType.TURN_DONE, init=False)


@dataclass(frozen=True)
class AgentVideo:
    """A frame of the agent's avatar; show it with the AgentAudio sample at ``audio_offset`` (-1: idle)."""

    turn_id: int
    audio_offset: int  # on the session's agent-audio timeline: all AgentAudio samples, counted from 0
    data: bytes
    width: int
    height: int
    keyframe: bool = False
    mouth_open: float = 0.0
    type: EventType = field(default=EventType.AGENT_VIDEO, init=False)


@dataclass(frozen=True)
class AvatarStopped:
    """The avatar's video stopped (its service failed); the audio goes on."""

    avatar: str
    code: str
    message: str
    type: EventType = field(default=EventType.AVATAR_STOPPED, init=False)


@dataclass(frozen=True)
class SessionDraining:
    """The server is shutting down: the session ends cleanly within ``seconds_left`` (reconnect elsewhere)."""

    seconds_left: float
    type: EventType = field(default=EventType.DRAINING, init=False)


Event = (
    SessionStarted | UserTranscript | AgentText | AgentAudio | AgentStateChanged | ToolCall | TurnMetrics
    | UsageReport | SessionError | TurnDone | AgentVideo | AvatarStopped | SessionDraining
)


def usage_from_proto(usage: common_pb2.Usage) -> Usage:
    return Usage(
        model=usage.model,
        audio_seconds_in=usage.audio_seconds_in,
        audio_seconds_out=usage.audio_seconds_out,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        characters=usage.characters,
    )


def _state(value: int) -> AgentState:
    try:
        return AgentState(value)
    except ValueError:  # a newer server's state this client does not know
        return AgentState.UNSPECIFIED


def _metrics(m: agent_pb2.TurnMetrics) -> TurnMetrics:
    return TurnMetrics(
        turn_id=m.turn_id,
        end_of_utterance_delay_ms=m.end_of_utterance_delay_ms,
        stt_final_latency_ms=m.stt_final_latency_ms,
        llm_ttft_ms=m.llm_ttft_ms,
        tts_ttfb_ms=m.tts_ttfb_ms,
        voice_to_voice_ms=m.voice_to_voice_ms,
        stt_model=m.stt_model,
        llm_model=m.llm_model,
        tts_model=m.tts_model,
        fallbacks=tuple(m.fallbacks),
    )


def _error(e: agent_pb2.SessionError) -> SessionError:
    return SessionError(
        turn_id=e.turn_id,
        code=e.code,
        message=e.message,
        reason=e.detail.reason,
        retryable=e.detail.retryable,
        model=e.detail.model,
        known=tuple(e.detail.known),
    )


def _tool_call(call: llm_pb2.ToolCall) -> ToolCall:
    return ToolCall(call_id=call.id, name=call.name, arguments_json=call.arguments_json)


def from_proto(response: agent_pb2.SessionResponse) -> Event | None:
    """The event of one server message; None for an empty message (or an event this client does not know)."""
    kind = response.WhichOneof("event")
    if kind == "started":
        return SessionStarted(session_id=response.started.session_id)
    if kind == "user_transcript":
        t = response.user_transcript
        return UserTranscript(turn_id=t.turn_id, text=t.text, final=t.final)
    if kind == "agent_text":
        return AgentText(turn_id=response.agent_text.turn_id, delta=response.agent_text.delta)
    if kind == "agent_audio":
        a = response.agent_audio
        return AgentAudio(turn_id=a.turn_id, audio=a.audio, sample_rate=a.sample_rate_hz)
    if kind == "state":
        return AgentStateChanged(state=_state(response.state.state), turn_id=response.state.turn_id)
    if kind == "tool_call":
        return _tool_call(response.tool_call)
    if kind == "metrics":
        return _metrics(response.metrics)
    if kind == "usage":
        u = response.usage
        return UsageReport(turn_id=u.turn_id, service=u.service, usage=usage_from_proto(u.usage))
    if kind == "error":
        return _error(response.error)
    if kind == "turn_done":
        d = response.turn_done
        return TurnDone(turn_id=d.turn_id, text=d.text, interrupted=d.interrupted)
    if kind == "agent_video":
        v = response.agent_video
        f = v.frame
        return AgentVideo(turn_id=v.turn_id, audio_offset=v.audio_offset_samples, data=f.data, width=f.width,
                          height=f.height, keyframe=f.keyframe, mouth_open=f.mouth_open)
    if kind == "avatar_stopped":
        a = response.avatar_stopped
        return AvatarStopped(avatar=a.avatar, code=a.code, message=a.message)
    if kind == "draining":
        return SessionDraining(seconds_left=response.draining.seconds_left)
    return None
