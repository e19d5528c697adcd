"""Turn-taking: when the user's turn ends and when user speech interrupts the agent.

Pure logic, no I/O: the session feeds it STT events and audio positions and
asks what to do. Times are milliseconds on the user's audio timeline (the
STT stream's clock) unless a name says otherwise.

End of turn: the STT service ends an utterance after ``min_endpointing_delay``
of silence (its endpointing); the orchestrator then ends the turn at once when
the transcript looks finished, and otherwise waits up to
``max_endpointing_delay`` after the end of speech for the user to go on. A
better judge of completeness (a turn-detection model run on the audio) can
replace ``completeness`` without changing the session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TERMINAL = ".?!…。？！"
# Words after which an utterance is almost never complete.
OPEN_WORDS = frozenset(
    """and or but because since although though if when while whereas unless until than which whose the a an my
    your his her our their these those to of in on at for with from by about into as um uh er erm""".split()
)


def has_words(text: str) -> bool:
    """Whether a transcript holds a word (not only punctuation, as STT gives for noise)."""
    return re.search(r"\w", text) is not None


def completeness(text: str) -> float:
    """How finished ``text`` looks as a spoken turn: 1.0 finished, 0.0 clearly not.

    A heuristic on the transcript: terminal punctuation is needed; a trailing
    comma, dash or ellipsis, or a last word that opens a clause (a
    conjunction, article, preposition or filler) before a period means the
    user is still going. A question or exclamation mark ends the turn.
    """
    stripped = text.strip()
    if not stripped:
        return 0.0
    if stripped.endswith(("...", "…", ",", ";", ":", "-", "—", "–")):
        return 0.0
    if stripped.rstrip("\"')]}”’")[-1:] in ("?", "!", "？", "！"):
        return 1.0  # a question or an exclamation is complete whatever its last word
    words = re.findall(r"[\w']+", stripped.lower())
    if words and words[-1] in OPEN_WORDS:
        return 0.0
    last = stripped.rstrip("\"')]}”’")[-1:]
    if last and last in TERMINAL:
        return 1.0
    return 0.3


def looks_finished(text: str) -> bool:
    """Whether the transcript reads as a complete turn."""
    return completeness(text) >= 0.5


def endpoint_wait_ms(text: str, silence_ms: float, min_delay_ms: float, max_delay_ms: float) -> float:
    """Milliseconds still to wait before ending the turn, after ``silence_ms`` of silence.

    A finished-looking transcript waits for ``min_delay_ms`` of silence, an
    unfinished one for ``max_delay_ms``.
    """
    target = min_delay_ms if looks_finished(text) else max(max_delay_ms, min_delay_ms)
    return max(0.0, target - silence_ms)


@dataclass
class UserTurn:
    """The user's turn being collected: finals of one or more utterances."""

    parts: list[str] = field(default_factory=list)
    speech_end_ms: int | None = None  # end of the last utterance on the audio timeline
    speaking: bool = False  # an utterance is open (speech started, not yet final)
    interim: str = ""

    @property
    def text(self) -> str:
        return " ".join(p for p in (*self.parts, self.interim) if p).strip()

    @property
    def final_text(self) -> str:
        return " ".join(p for p in self.parts if p).strip()

    def speech_started(self) -> None:
        self.speaking = True

    def interim_result(self, text: str) -> None:
        self.interim = text.strip()

    def final_result(self, text: str, end_ms: int) -> None:
        if text.strip():
            self.parts.append(text.strip())
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
