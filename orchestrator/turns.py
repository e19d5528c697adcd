"""The user's turn as the session collects it, and barge-in (pure logic, no I/O).

The session feeds these STT events and audio positions. Times are
milliseconds on the user's audio timeline (the STT stream's clock). When the
turn ends is not decided here: that is the ``TurnDetector``'s
(``voicemesh.speech.turn``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from voicemesh.speech.turn.text import has_words


@dataclass
class UserTurn:
    """The user's turn being collected: finals of one or more utterances."""

    parts: list[str] = field(default_factory=list)
    speech_end_ms: int | None = None  # end of the last utterance on the audio timeline
    speaking: bool = False  # an utterance is open (speech started, not yet final)
    interim: str = ""
    start_ms: int | None = None  # where the turn's first utterance started on the audio timeline

    @property
    def text(self) -> str:
        return " ".join(p for p in (*self.parts, self.interim) if p).strip()

    @property
    def final_text(self) -> str:
        return " ".join(p for p in self.parts if p).strip()

    def speech_started(self, time_ms: int | None = None) -> None:
        self.speaking = True
        if self.start_ms is None:
            self.start_ms = time_ms

    def interim_result(self, text: str) -> None:
        self.interim = text.strip()

    def final_result(self, text: str, end_ms: int) -> None:
        if text.strip():
            self.parts.append(text.strip())
        elif not self.parts:
            self.start_ms = None  # no words yet (a noise): the turn starts with the next utterance
        self.interim = ""
        self.speaking = False
        self.speech_end_ms = end_ms

    def speech_ended(self, time_ms: int) -> None:
        self.speaking = False
        self.speech_end_ms = time_ms


class BargeIn:
    """Decides when user speech interrupts the agent, and when it was only noise.

    ``start`` on the STT's speech_started (or the local VAD's) while the agent
    talks; ``due`` with the audio position received so far is True once the
    speech has lasted ``min_duration_ms`` (and has not ended); ``words`` marks
    that the STT heard words, which makes the interruption real.
    """

    def __init__(self, min_duration_ms: int):
        self.min_duration_ms = min_duration_ms
        self.started_ms: int | None = None
        self.heard_words = False

    def start(self, time_ms: int) -> None:
        if self.started_ms is None:
            self.started_ms = time_ms
            self.heard_words = False

    def end(self) -> None:
        self.started_ms = None

    def words(self, text: str) -> bool:
        """Record a transcript; True when it holds words."""
        if has_words(text):
            self.heard_words = True
        return self.heard_words

    def due(self, audio_ms: int) -> bool:
        """Whether the speech has lasted long enough to interrupt, at audio position ``audio_ms``."""
        return self.started_ms is not None and audio_ms - self.started_ms >= self.min_duration_ms

    def reset(self) -> None:
        self.started_ms = None
        self.heard_words = False
