"""The interface every text-to-speech backend implements.

A backend turns one segment of text into PCM s16le mono audio at its voice's
native rate (``stream``); ``synthesize`` resamples that to the rate the client
asked for, chunk by chunk, so every backend gets the same soxr resampling.
Backends never import grpc and raise ``voicemesh.errors`` exceptions.

A stream speaks its segments through one ``SpeechSession`` (``open_session``):
by default each segment is its own ``synthesize`` call, while a streaming
provider keeps one connection and one provider context for the whole reply,
so prosody runs on across segments and a barge-in cancels that context.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass

from voicemesh.audio import StreamResampler, float_to_pcm, pcm_to_float
from voicemesh.backend import Backend

MIN_SPEED = 0.25
MAX_SPEED = 4.0
TTS_CAPABILITIES = {"streaming": True, "alignment": True}


@dataclass(frozen=True)
class VoiceOptions:
    """How to speak: the voice (descriptor variant, may be empty), speed and output rate."""

    voice: str = ""
    speed: float = 1.0
    sample_rate_hz: int = 0  # 0: the voice's native rate


@dataclass(frozen=True)
class WordTime:
    """A word a provider timed, in seconds from the start of its segment's audio."""

    word: str
    start_s: float
    end_s: float


class TtsBackend(Backend):
    """Base of the TTS backends (one instance per provider/model, shared by streams)."""

    @abstractmethod
    def native_rate(self, voice: str) -> int:
        """Sample rate (Hz) the backend produces for ``voice``."""

    def check_voice(self, voice: str) -> str:
        """Return the voice to use for a descriptor variant; raise ModelNotFound for unknown ones."""
        return voice

    @abstractmethod
    def stream(self, text: str, options: VoiceOptions) -> AsyncIterator[bytes]:
        """PCM s16le mono of ``text`` at ``native_rate(options.voice)``, in pieces of any (even) size.

        Work happens off the event loop; closing the iterator stops it at the
        next piece.
        """

    def open_session(self, options: VoiceOptions) -> SpeechSession:
        """The session one Synthesize stream speaks its segments through."""
        return SpeechSession(self, options)

    async def synthesize(self, text: str, options: VoiceOptions) -> AsyncIterator[bytes]:
        """PCM s16le mono of ``text`` at ``options.sample_rate_hz`` (or native when 0)."""
        native = self.native_rate(options.voice)
        resampler = StreamResampler(native, options.sample_rate_hz or native)
        pieces = self.stream(text, options)
        try:
            async for piece in pieces:
                out = resampler.process(pcm_to_float(piece))
                if len(out):
                    yield float_to_pcm(out)
            tail = resampler.process(pcm_to_float(b""), last=True)
            if len(tail):
                yield float_to_pcm(tail)
        finally:
            await pieces.aclose()


class SpeechSession:
    """One stream's segments, spoken in order; the base speaks each with ``synthesize``.

    ``speak`` is called for one segment at a time and yields its audio at
    ``options.sample_rate_hz``; ``cancel`` follows a barge-in (after the
    ``speak`` in progress was closed) and must stop the provider at once;
    ``aclose`` ends the session. After a ``speak`` ends, ``words`` holds the
    segment's timed words when the provider sends them.
    """

    def __init__(self, backend: TtsBackend, options: VoiceOptions):
        self.backend = backend
        self.options = options
        self.words: list[WordTime] = []  # the last segment's timed words, from providers that time them

    def speak(self, text: str) -> AsyncIterator[bytes]:
        return self.backend.synthesize(text, self.options)

    async def cancel(self) -> None:
        """Stop what the provider is still making for this stream."""

    async def aclose(self) -> None:
        """Release the session's connection, if it has one."""
