"""Server events built from a session's plain values: per-turn metrics and in-band errors."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc

from voicemesh.errors import VoiceMeshError
from voicemesh.runtime.status import error_detail
from voicemesh.v1 import agent_pb2


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
