"""The fixed-silence policy: the turn ends after ``min_delay_ms`` of silence, whatever was said.

This is server VAD as OpenAI's realtime API defines it (``silence_duration_ms``):
the VAD's endpointing is the whole decision, so nothing more is waited.
"""

from __future__ import annotations

from voicemesh.speech.turn.base import TurnDetector


class SilenceTurnDetector(TurnDetector):
    """End the turn after a fixed silence."""

    name = "silence"

    def target_ms(self, text: str, probability: float | None = None) -> float:
        return self.min_delay_ms
