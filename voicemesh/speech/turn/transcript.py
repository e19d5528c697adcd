"""The transcript policy: a finished-looking turn ends after ``min_delay_ms`` of silence, an unfinished
one (no end mark, or a last word that opens a clause) waits up to ``max_delay_ms`` for the user to go on."""

from __future__ import annotations

from voicemesh.speech.turn.base import TurnDetector
from voicemesh.speech.turn.text import completeness


class TranscriptTurnDetector(TurnDetector):
    """End the turn by the silence and how finished the transcript looks."""

    name = "transcript"

    def target_ms(self, text: str, probability: float | None = None) -> float:
        return self.min_delay_ms if completeness(text) >= 0.5 else self.longest_ms
