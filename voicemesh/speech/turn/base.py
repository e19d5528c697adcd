"""The end-of-turn decision as an object: a small base, one policy per file.

An engine's VAD (the STT's endpointing) closes an utterance after
``stt_silence_ms`` of silence. The detector then answers one question, "how
long to wait now": ``end_of_speech`` says how much more silence ends the
turn (0 or less: it ends now) and whether a verdict on the user's last audio
should move that wait; ``target_ms`` turns a verdict into the new wait.
Preemptive generation asks ``may_preempt`` before it starts a reply early.
A detector holds no state of a conversation, so a session keeps one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from voicemesh.speech.turn.text import completeness, has_words

DEFAULT_MIN_DELAY_MS = 500
DEFAULT_MAX_DELAY_MS = 3000


@dataclass(frozen=True)
class Judge:
    """Ask for a verdict on the user's last audio before the turn ends."""

    use_model: bool  # False: the plain wait is over already (a slow final); only the voice check is left
    voice_after_ms: float  # audio from this long past the end of speech is only checked for voice again
    probability: float | None = None  # without use_model: the model's verdict made already, if any


@dataclass(frozen=True)
class EndOfSpeech:
    """What to do when an utterance with words closed."""

    wait_ms: float  # silence still to wait before the turn ends; 0 or less: it ends now
    judge: Judge | None = None  # a verdict to ask for (its result goes to ``target_ms``)


class TurnDetector(ABC):
    """When the user's turn ends, from the silence after speech and the transcript (and maybe a model)."""

    name: ClassVar[str]
    needs_audio: ClassVar[bool] = False  # whether ``verdict`` wants the user's last seconds of audio

    def __init__(self, *, min_delay_ms: float = DEFAULT_MIN_DELAY_MS, max_delay_ms: float = DEFAULT_MAX_DELAY_MS):
        self.min_delay_ms, self.max_delay_ms = min_delay_ms, max_delay_ms

    @property
    def longest_ms(self) -> float:
        return max(self.max_delay_ms, self.min_delay_ms)

    @property
    def stt_silence_ms(self) -> int:
        """The silence after which the VAD closes an utterance (the STT's endpointing)."""
        return int(self.min_delay_ms)

    @abstractmethod
    def target_ms(self, text: str, probability: float | None = None) -> float:
        """Silence after the end of speech before the turn of ``text`` ends (``probability``: a verdict)."""

    def wait_ms(self, text: str, silence_ms: float, probability: float | None = None) -> float:
        """How long to wait now, after ``silence_ms`` of silence (0: the turn ends now)."""
        return max(0.0, self.target_ms(text, probability) - silence_ms)

    def end_of_speech(self, text: str, silence_ms: float, *, closing: bool = False) -> EndOfSpeech:
        """The VAD closed an utterance of ``text`` ``silence_ms`` ago: the wait, and a verdict to ask for."""
        return EndOfSpeech(self.target_ms(text) - silence_ms)

    async def verdict(self, samples: np.ndarray, judge: Judge) -> float | None:
        """How likely the turn is complete, from the user's last audio (None: no opinion)."""
        return None

    def early_window_ms(self, text: str) -> float | None:
        """For a detector that judges audio: the silence after a pause's start at which its verdict on ``text``
        may be made already, while the STT waits out its endpointing (None: not early)."""
        return None

    def may_preempt(self, text: str) -> bool:
        """Whether a reply may be generated ahead of the turn's end for ``text`` (an open last word: no)."""
        return has_words(text) and completeness(text) > 0.0
