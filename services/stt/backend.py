"""The speech-to-text backend interface and its typed events.

A backend turns one audio stream (PCM s16le mono at the configured rate,
chunks already validated by the servicer) into a sequence of events. Backends
never import grpc; the servicer translates these dataclasses to protobuf.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Union

from voicemesh.backend import Backend

DEFAULT_MIN_SILENCE_MS = 500
DEFAULT_SPEECH_THRESHOLD = 0.5


@dataclass(frozen=True)
class RecognitionOptions:
    """The plain-value form of a RecognitionConfig."""

    language: str
    sample_rate_hz: int
    interim_results: bool = False
    min_silence_ms: int = DEFAULT_MIN_SILENCE_MS
    speech_threshold: float = DEFAULT_SPEECH_THRESHOLD


@dataclass(frozen=True)
class WordTiming:
    """One recognized word; times are ms from the start of the stream."""

    word: str
    start_ms: int
    end_ms: int
    confidence: float


@dataclass(frozen=True)
class SpeechStartedEvent:
    """The voice activity detector found the start of utterance ``utterance_id``."""

    utterance_id: int
    time_ms: int


@dataclass(frozen=True)
class TranscriptEvent:
    """A hypothesis for one utterance: interim (``final`` False) or final."""

    utterance_id: int
    text: str
    final: bool
    start_ms: int
    end_ms: int
    stable_text: str = ""
    words: tuple[WordTiming, ...] = ()
    confidence: float = 0.0
    language: str = ""
    end_candidate: bool = False  # an interim at a pause: the final if the pause ends the utterance


@dataclass(frozen=True)
class SpeechEndedEvent:
    """Utterance ``utterance_id`` ended at ``time_ms`` (sent after its final)."""

    utterance_id: int
    time_ms: int


@dataclass(frozen=True)
class UsageEvent:
    """What the stream consumed; the last event of every stream."""

    audio_seconds_in: float
    model: str = ""


SttEvent = Union[SpeechStartedEvent, TranscriptEvent, SpeechEndedEvent, UsageEvent]


@dataclass(frozen=True)
class Hypothesis:
    """What one decode of an utterance's audio gave (times relative to the stream)."""

    text: str
    words: tuple[WordTiming, ...] = ()
    confidence: float = 0.0
    language: str = ""


class SttBackend(Backend):
    """Interface of every STT provider.

    ``recognize`` consumes ``audio`` (validated PCM chunks at
    ``options.sample_rate_hz``) until it ends and yields events: per
    utterance SpeechStarted, Transcript(interim)…, Transcript(final),
    SpeechEnded; and one UsageEvent last. Closing the generator early (client
    cancel) must release everything the stream holds.
    """

    #: Languages the backend accepts; empty means any.
    languages: tuple[str, ...] = ()

    def recognize(self, options: RecognitionOptions, audio: AsyncIterator[bytes]) -> AsyncIterator[SttEvent]:
        raise NotImplementedError
