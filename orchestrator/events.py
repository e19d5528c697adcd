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
                 fallbacks: list[str], guard: tuple[str, int] = ("", 0)) -> agent_pb2.TurnMetrics:
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
        reply_cut=guard[0],
        reply_tokens=guard[1],
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
        # The session's avatar (``avatar.AvatarLane``): it sees the agent's audio as it goes to the client,
        # each barge-in and each turn's end, so its video shows what the client heard.
        self.tap = None

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
        tap = self.tap
        if tap is not None:
            tap.queued()

            def sent() -> None:
                on_sent()
                tap.sent(turn_id, pcm)
        self._put(on_sent if tap is None else sent,
                  agent_audio=A.AgentAudio(turn_id=turn_id, audio=pcm, sample_rate_hz=rate))

    def drop_audio(self, turn_id: int) -> None:
        """Audio of ``turn_id`` not yet sent is not sent (the turn was interrupted)."""
        dropped = self.outbox.drop_audio(turn_id)
        if self.tap is not None:
            self.tap.clear(turn_id, dropped)

    def agent_video(self, turn_id: int, offset: int, frame) -> None:
        self._put(agent_video=A.AgentVideo(turn_id=turn_id, audio_offset_samples=offset, frame=frame))

    def avatar_stopped(self, avatar: str, code: str, message: str) -> None:
        self._put(avatar_stopped=A.AvatarStopped(avatar=avatar, code=code, message=message))

    def tool_call(self, call: llm_pb2.ToolCall) -> None:
        self._put(tool_call=call)

    def usage(self, turn_id: int, service: str, usage) -> None:
        self._put(usage=A.UsageReport(turn_id=turn_id, service=service, usage=usage))

    def metrics(self, turn_id: int, timing: TurnTiming, times, *, models: tuple[str, str],
                fallbacks: list[str], guard: tuple[str, int] = ("", 0)) -> None:
        self._put(metrics=turn_metrics(turn_id, timing, times, models=models, fallbacks=fallbacks, guard=guard))

    def draining(self, seconds_left: float) -> None:
        self._put(draining=A.SessionDraining(seconds_left=seconds_left))

    def turn_done(self, turn_id: int, text: str, *, interrupted: bool) -> None:
        tap = self.tap
        self._put(None if tap is None else lambda: tap.reply_end(turn_id),
                  turn_done=A.AgentTurnDone(turn_id=turn_id, text=text, interrupted=interrupted))
