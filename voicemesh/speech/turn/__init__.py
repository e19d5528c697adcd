"""End of turn: one ``TurnDetector`` per policy, chosen by name.

- ``silence``: the turn ends after a fixed silence (server VAD);
- ``transcript``: a finished-looking transcript ends sooner than an open one;
- ``smart-turn``: the Smart Turn v3 model's verdict on the audio, with the transcript.

A new policy is one file with a ``TurnDetector`` subclass and its name in ``POLICIES``.
"""

from __future__ import annotations

from voicemesh.errors import InvalidInput
from voicemesh.speech.turn.base import EndOfSpeech, Judge, TurnDetector
from voicemesh.speech.turn.silence import SilenceTurnDetector
from voicemesh.speech.turn.smart import SmartTurnDetector
from voicemesh.speech.turn.transcript import TranscriptTurnDetector

POLICIES = ("silence", "transcript", "smart-turn")


def turn_detector(policy: str, *, min_delay_ms: float, max_delay_ms: float, model=None) -> TurnDetector:
    """The detector of ``policy`` with a session's delays (``model``: the SmartTurn the smart-turn policy runs)."""
    if policy == "silence":
        return SilenceTurnDetector(min_delay_ms=min_delay_ms, max_delay_ms=max_delay_ms)
    if policy == "transcript":
        return TranscriptTurnDetector(min_delay_ms=min_delay_ms, max_delay_ms=max_delay_ms)
    if policy == "smart-turn":
        if model is None:
            raise InvalidInput("the smart-turn policy needs the Smart Turn model (the turn extra)")
        return SmartTurnDetector(model, min_delay_ms=min_delay_ms, max_delay_ms=max_delay_ms)
    raise InvalidInput(f"unknown turn policy {policy!r}; known: {', '.join(POLICIES)}")


__all__ = ["POLICIES", "EndOfSpeech", "Judge", "TurnDetector", "turn_detector"]
