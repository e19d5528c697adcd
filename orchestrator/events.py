"""Session events (to the client), all built here: ``Emitter`` turns a session's plain values into
SessionResponse messages on its outbox; per-turn metrics and in-band errors are built from the same values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import grpc

from voicemesh.errors import VoiceMeshError
from voicemesh.orchestrator.outbox import Outbox
from voicemesh.runtime.status import error_detail
from voicemesh.v1 import agent_pb2, llm_pb2

A = agent_pb2


@dataclass
class TurnTiming:
    """Wall-clock marks (monotonic seconds) of the user's side of a turn.

    ``end_of_speech`` is when the audio at the STT's end of speech reached
    the orchestrator (found on the audio timeline), not when the STT said so.
    """

    end_of_speech: float | None = None
    final: float | None = None
    decided: float | None = None
    stt_model: str = ""
    stt_fallbacks: list[str] = field(default_factory=list)


def _ms(start: float | None, end: float | None) -> float:
    return max(0.0, (end - start) * 1000) if start is not None and end is not None else 0.0


def turn_metrics(turn_id: int, timing: TurnTiming, times, *, models: tuple[str, str],
                 fallbacks: list[str]) -> agent_pb2.TurnMetrics:
    """The TurnMetrics of a turn from the user's marks and the reply's (``ReplyTimes``)."""
    eos = timing.end_of_speech
    return agent_pb2.TurnMetrics(
        turn_id=turn_id,
        end_of_utterance_delay_ms=_ms(eos, timing.decided),
        stt_final_latency_ms=_ms(eos, timing.final),
        llm_ttft_ms=_ms(times.llm_request, times.llm_first),
        tts_ttfb_ms=_ms(times.tts_first_text, times.first_synthesized or times.first_audio),  # held or not
        voice_to_voice_ms=_ms(eos, times.first_audio),
        stt_model=timing.stt_model,
        llm_model=models[0],
        tts_model=models[1],
        fallbacks=[*timing.stt_fallbacks, *fallbacks],
    )


def session_error(turn_id: int, exc: BaseException) -> agent_pb2.SessionError:
    """A non-fatal error event for ``exc`` (a failed service call or a VoiceMesh error)."""
    detail = None
    if isinstance(exc, grpc.aio.AioRpcError):
        code, message = exc.code().name, exc.details() or ""
    elif isinstance(exc, VoiceMeshError):
        code, message, detail = exc.code, exc.message, error_detail(exc)
    else:
        code, message = "INTERNAL", f"{type(exc).__name__}: {exc}"
    return agent_pb2.SessionError(turn_id=turn_id, code=code, message=message, detail=detail)


class Emitter:
    """The one place a session's events to its client are made: one method per SessionResponse event."""

    def __init__(self, outbox: Outbox):
        self.outbox = outbox

    def _put(self, on_sent: Callable[[], None] | None = None, **event) -> None:
        self.outbox.put(A.SessionResponse(**event), on_sent=on_sent)

    def started(self, session_id: str) -> None:
        self._put(started=A.SessionStarted(session_id=session_id))

    def state(self, state: int, turn_id: int) -> None:
        self._put(state=A.AgentStateChanged(state=state, turn_id=turn_id))

    def error(self, turn_id: int, exc: BaseException) -> None:
        self._put(error=session_error(turn_id, exc))

    def user_transcript(self, turn_id: int, text: str, *, final: bool = False) -> None:
        self._put(user_transcript=A.UserTranscript(turn_id=turn_id, text=text, final=final))

    def agent_text(self, turn_id: int, delta: str) -> None:
        self._put(agent_text=A.AgentText(turn_id=turn_id, delta=delta))

    def agent_audio(self, turn_id: int, pcm: bytes, rate: int, on_sent: Callable[[], None]) -> None:
        """Audio of a turn; ``on_sent`` runs when it goes to the client (what it has played counts from then)."""
        self._put(on_sent, agent_audio=A.AgentAudio(turn_id=turn_id, audio=pcm, sample_rate_hz=rate))

    def drop_audio(self, turn_id: int) -> None:
        """Audio of ``turn_id`` not yet sent is not sent (the turn was interrupted)."""
        self.outbox.drop_audio(turn_id)

    def tool_call(self, call: llm_pb2.ToolCall) -> None:
        self._put(tool_call=call)

    def usage(self, turn_id: int, service: str, usage) -> None:
        self._put(usage=A.UsageReport(turn_id=turn_id, service=service, usage=usage))

    def metrics(self, turn_id: int, timing: TurnTiming, times, *, models: tuple[str, str],
                fallbacks: list[str]) -> None:
        self._put(metrics=turn_metrics(turn_id, timing, times, models=models, fallbacks=fallbacks))

    def draining(self, seconds_left: float) -> None:
        self._put(draining=A.SessionDraining(seconds_left=seconds_left))

    def turn_done(self, turn_id: int, text: str, *, interrupted: bool) -> None:
        self._put(turn_done=A.AgentTurnDone(turn_id=turn_id, text=text, interrupted=interrupted))
