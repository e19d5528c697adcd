"""The internal events of a session: what is put on its one queue, handled one at a time in ``Session._main``.

Each is a small frozen value; the session dispatches them in one ``match``.
Events of a stream carry the stream (``lane``) they came from, so those of a
stream the session has replaced are recognised and only their usage counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc

from voicemesh.orchestrator.lanes import RealtimeLane, SttLane
from voicemesh.orchestrator.realtime_turn import RealtimeTurn
from voicemesh.orchestrator.reply import Reply
from voicemesh.v1 import agent_pb2, llm_pb2, realtime_pb2, stt_pb2

if TYPE_CHECKING:
    from voicemesh.orchestrator.avatar import AvatarStream


@dataclass(frozen=True)
class ClientMessage:
    """A message of the client's stream."""

    request: agent_pb2.SessionRequest


@dataclass(frozen=True)
class ClientEnded:
    """The client half-closed its stream: the session answers what it heard, then ends."""


@dataclass(frozen=True)
class TimerFired:
    """A timer of the session ran out (``token`` tells it from a timer set again since)."""

    name: str
    token: object


@dataclass(frozen=True)
class VoiceHeard:
    """The local VAD heard a burst of voice long enough to interrupt, from ``start_ms`` of user audio."""

    epoch: int
    start_ms: float


@dataclass(frozen=True)
class SttEvent:
    """An event of an STT stream."""

    lane: SttLane
    response: stt_pb2.RecognizeResponse


@dataclass(frozen=True)
class SttEnded:
    """An STT stream ended."""

    lane: SttLane


@dataclass(frozen=True)
class SttFailed:
    """An STT stream broke."""

    lane: SttLane
    error: grpc.aio.AioRpcError


@dataclass(frozen=True)
class SttLost:
    """No STT target answered within the bounded wait after a stream broke (the listener keeps trying)."""

    error: BaseException


@dataclass(frozen=True)
class Draining:
    """The orchestrator drains (SIGTERM): tell the client the time left, finish the turn, then end."""

    seconds_left: float


@dataclass(frozen=True)
class TurnVerdict:
    """The turn detector's verdict on the user's audio at the end of speech ``end_ms`` (``check``: which one)."""

    check: int
    end_ms: float
    probability: float | None


@dataclass(frozen=True)
class ReplyDone:
    """A pipeline reply's task finished."""

    reply: Reply


@dataclass(frozen=True)
class RealtimeEvent:
    """An event of a realtime Converse stream."""

    lane: RealtimeLane
    response: realtime_pb2.ConverseResponse


@dataclass(frozen=True)
class RealtimeEnded:
    """A realtime stream ended (``error``: it broke)."""

    lane: RealtimeLane
    error: grpc.aio.AioRpcError | None


@dataclass(frozen=True)
class RealtimePlayed:
    """All audio of a realtime turn went to the client."""

    turn: RealtimeTurn


@dataclass(frozen=True)
class RealtimeToolResults:
    """The client answered the tool calls of a realtime turn."""

    lane: RealtimeLane | None  # the session's stream when the results came (None: back on the pipeline)
    turn: RealtimeTurn
    calls: list[llm_pb2.ToolCall]
    outputs: list[str]


@dataclass(frozen=True)
class AvatarEnded:
    """The session's avatar stream ended (``error``: it broke)."""

    stream: AvatarStream
    error: grpc.aio.AioRpcError | None


Event = (ClientMessage | ClientEnded | TimerFired | VoiceHeard | SttEvent | SttEnded | SttFailed | SttLost
         | Draining | TurnVerdict | ReplyDone | RealtimeEvent | RealtimeEnded | RealtimePlayed | RealtimeToolResults
         | AvatarEnded)
