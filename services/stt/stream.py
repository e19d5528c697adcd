"""One recognition stream: resampling, VAD, endpointing, interims and finals.

Every backend that decodes whole utterances (local faster-whisper, remote
``/audio/transcriptions``) shares this pipeline; it differs only in its
``decode`` coroutine. All times are derived from the audio received (16 kHz
sample positions), never from the wall clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np

from voicemesh.audio import StreamResampler, pcm_to_float
from voicemesh.services.stt.backend import (
    Hypothesis,
    RecognitionOptions,
    SpeechEndedEvent,
    SpeechStartedEvent,
    SttEvent,
    TranscriptEvent,
    UsageEvent,
)
from voicemesh.speech.vad import RATE, Boundary, Endpointer, SileroVad, vad_worker

log = logging.getLogger(__name__)

#: decode(samples at 16 kHz, offset of the first sample in ms, final?) -> hypothesis with stream times
Decode = Callable[[np.ndarray, int, bool], Awaitable[Hypothesis]]

PREROLL_MS = 250  # audio kept before the detected start, so the first phoneme is not clipped
POSTROLL_MS = 200  # audio kept after the detected end
# Once a pause has lasted this long (two 32 ms VAD frames), the final decode starts speculatively: if the
# pause turns into the end of the utterance (min_silence_ms), its result is ready earlier; if speech
# resumes, it is dropped. Its clip is the audio so far padded with zeros to the final clip's POSTROLL_MS.
# bench/eager_final.py (34 questions in three voices): the finals' WER is the same as with the 128 ms
# start's (the old 100, which the frames made 128; unpadded, 64 ms lost 2-3 words per voice), and pauses
# inside questions start a few more speculative decodes (19 more in 102 clips). bench/conversation.py:
# voice to voice p50 467-494 ms in four runs, against 540 ms.
EAGER_FINAL_MS = 64
MAX_UNSCORED = RATE * 2  # samples (16 kHz) read from a stream ahead of its VAD; the reader then waits
_DONE = object()


def ms(position: int) -> int:
    """A 16 kHz sample position as milliseconds."""
    return position * 1000 // RATE


class _Audio:
    """The recent 16 kHz audio of a stream, addressed by absolute sample position.

    Audio before ``start`` is forgotten. The buffer itself is cut only once a second of forgotten audio
    has piled up: a stream in silence moves ``start`` with every chunk, and copying its buffer each time
    was a measurable part of the per-chunk cost with many streams.
    """

    def __init__(self) -> None:
        self.start = 0
        self._base = 0  # position of the buffer's first sample (at most ``start``)
        self._parts: list[np.ndarray] = []
        self._joined = np.zeros(0, dtype=np.float32)
        self.end = 0

    def append(self, samples: np.ndarray) -> None:
        self._parts.append(samples)
        self.end += len(samples)

    def _all(self) -> np.ndarray:
        if self._parts:
            self._joined = np.concatenate([self._joined, *self._parts])
            self._parts = []
        return self._joined

    def slice(self, begin: int, end: int) -> np.ndarray:
        begin = max(begin, self.start)
        end = max(min(end, self.end), begin)  # empty, not a negative index, when it ends before what is kept
        return self._all()[begin - self._base : end - self._base].copy()

    def keep_from(self, position: int) -> None:
        """Forget audio before ``position``."""
        position = min(max(position, self.start), self.end)
        if position == self.start:
            return  # nothing to forget (the common case during an utterance)
        self.start = position
        if position - self._base >= RATE:
            self._joined = self._all()[position - self._base :]
            self._base = position


class _Received:
    """Audio read from the stream and not yet scored. The scorer takes all of it at once: a stream that fell
    behind (a busy machine) catches up with one VAD call over many chunks, whose fixed cost dominates, instead
    of one call per chunk; a stream in real time still gets each chunk scored as it comes. At most
    ``MAX_UNSCORED`` samples are read ahead: past that the reader waits, so a client sending faster than the
    stream is scored is slowed by gRPC's flow control instead of filling this process's memory."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._unscored = 0
        self._ended = False

    def put(self, samples: np.ndarray) -> None:
        self._parts.append(samples)
        self._unscored += len(samples)
        if self._unscored >= MAX_UNSCORED:
            self._room.clear()
        self._wake.set()

    async def room(self) -> None:
        """Wait until the scorer has taken what was read ahead."""
        await self._room.wait()

    def close(self) -> None:
        self._ended = True
        self._wake.set()

    async def take(self) -> tuple[np.ndarray, bool]:
        """Everything received since the last take, and whether the audio has ended."""
        while not self._parts and not self._ended:
            self._wake.clear()
            await self._wake.wait()
        parts, self._parts = self._parts, []
        self._unscored = 0
        self._room.set()
        samples = parts[0] if len(parts) == 1 else np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
        return samples, self._ended


def _norm(word: str) -> str:
    return re.sub(r"[^\w']", "", word.lower())


class StablePrefix:
    """Interim text whose stable prefix only grows (agreement of consecutive hypotheses)."""

    def __init__(self) -> None:
        self.stable: list[str] = []
        self._previous: list[str] = []

    def update(self, text: str) -> tuple[str, str]:
        """(text, stable_text) for a new hypothesis; the text always starts with the stable prefix."""
        words = text.split()
        keep = len(self.stable)
        words = self.stable + words[keep:]  # the stable prefix never changes, whatever the new decode says
        agreed = keep
        while (agreed < len(words) and agreed < len(self._previous)
               and _norm(words[agreed]) == _norm(self._previous[agreed]) and _norm(words[agreed])):
            agreed += 1
        self.stable = self.stable + [w.rstrip(".,?!;:") for w in words[keep:agreed]]
        words = self.stable + words[agreed:]
        self._previous = words
        return " ".join(words), " ".join(self.stable)


class RecognizeStream:
    """Runs one stream; ``events(audio)`` yields its events in order."""

    def __init__(self, *, options: RecognitionOptions, vad: SileroVad, decode: Decode, model: str,
                 interim_interval_ms: int = 0, eager_final: bool = True, max_utterance_ms: int = 25000):
        self.options = options
        self._decode = decode
        self._model = model
        self._interim_every = interim_interval_ms * RATE // 1000 if options.interim_results else 0
        self._vad = vad.stream()
        self._endpointer = Endpointer(threshold=options.speech_threshold, min_silence_ms=options.min_silence_ms,
                                      max_utterance_ms=max_utterance_ms)
        self._resampler = StreamResampler(options.sample_rate_hz, RATE)
        self._audio = _Audio()
        self._events: asyncio.Queue = asyncio.Queue()
        self._samples_in = 0
        self._utterance = 0
        self._interim_task: asyncio.Task | None = None
        self._eager_final = eager_final
        self._eager: tuple[int, int, asyncio.Task] | None = None  # (utterance, end position, decode)
        self._last_interim = 0
        self._prefix = StablePrefix()
        self._interim_end = 0  # the audio (sample position) the utterance's last interim covered

    async def events(self, audio: AsyncIterator[bytes]) -> AsyncIterator[SttEvent]:
        pump = asyncio.create_task(self._pump(audio), name="stt-pump")
        try:
            while True:
                item = await self._events.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
            await pump
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    async def _pump(self, audio: AsyncIterator[bytes]) -> None:
        try:
            received = _Received()
            reader = asyncio.create_task(self._read(audio, received), name="stt-reader")
            try:
                ended = False
                while not ended:
                    samples, ended = await received.take()
                    if len(samples):
                        await self._advance(samples)
                await reader  # its error, if the audio stopped on one
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
            await self._advance(self._resampler.process(np.zeros(0, dtype=np.float32), last=True), last=True)
            if self._endpointer.in_speech:
                await self._finish(self._endpointer.end())
            self._events.put_nowait(UsageEvent(self._samples_in / self.options.sample_rate_hz, self._model))
            self._events.put_nowait(_DONE)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which raises it
            self._events.put_nowait(exc)
        finally:
            await self._cancel_interim()
            await self._cancel_eager()

    async def _read(self, audio: AsyncIterator[bytes], received: _Received) -> None:
        try:
            async for chunk in audio:
                samples = pcm_to_float(chunk)
                self._samples_in += len(samples)
                received.put(self._resampler.process(samples))
                await received.room()
        finally:
            received.close()

    async def _advance(self, samples: np.ndarray, last: bool = False) -> None:
        self._audio.append(samples)
        if last or self._vad.completes_frame(len(samples)):
            probs = await vad_worker().run(self._score, samples, last)
        else:
            probs = self._score(samples, last)  # less than a frame: only buffered, no model call to move off the loop
        for boundary in self._endpointer.feed(probs):
            if boundary.started:
                self._utterance += 1
                self._last_interim = boundary.position
                self._prefix = StablePrefix()
                self._interim_end = 0
                self._events.put_nowait(SpeechStartedEvent(self._utterance, ms(boundary.position)))
            else:
                await self._finish(boundary)
        if self._endpointer.in_speech:
            self._audio.keep_from(self._endpointer.start - RATE * PREROLL_MS // 1000)
            await self._maybe_eager_final()
            self._maybe_interim()
        else:
            self._audio.keep_from(self._endpointer.position - RATE * (PREROLL_MS + 200) // 1000)

    def _score(self, samples: np.ndarray, last: bool) -> np.ndarray:
        probs = self._vad.process(samples)
        return np.concatenate([probs, self._vad.flush()]) if last else probs

    def _clip(self, start: int, end: int) -> tuple[np.ndarray, int]:
        """The audio of an utterance with its margins, and the stream time (ms) of its first sample."""
        begin = max(start - RATE * PREROLL_MS // 1000, 0)
        return self._audio.slice(begin, end + RATE * POSTROLL_MS // 1000), ms(begin)

    async def _maybe_eager_final(self) -> None:
        end = self._endpointer.last_voiced_end
        if self._eager is not None and self._eager[1] != end:
            await self._cancel_eager()  # speech resumed: that guess is stale (dropped from the pool queue if waiting)
        if not self._eager_final or self._endpointer.pause * 1000 < EAGER_FINAL_MS * RATE:
            return
        if self._eager is not None and self._eager[:2] == (self._utterance, end):
            return
        await self._cancel_eager()
        await self._cancel_interim()  # the speculative final covers more audio: an older interim would come late
        clip, offset = self._clip(self._endpointer.start, end)
        # The audio after the last voiced frame is non-speech so far; padded with zeros to the final clip's
        # POSTROLL_MS, as if the pause went on.
        clip = np.concatenate([clip, np.zeros(max(0, RATE * POSTROLL_MS // 1000 - self._endpointer.pause),
                                              dtype=clip.dtype)])
        task = asyncio.create_task(self._eager_decode(self._utterance, end, clip, offset), name="stt-eager")
        self._eager = (self._utterance, end, task)

    async def _eager_decode(self, utterance: int, end: int, clip: np.ndarray, offset_ms: int) -> Hypothesis:
        """The speculative final; with interims asked for, it also goes out at once as an interim while the pause
        lasts, so a client can prepare its answer before the endpointing silence is over (the final that follows
        is this same decode, with no second one)."""
        hypothesis = await self._decode(clip, offset_ms, True)
        current = self._eager is not None and self._eager[:2] == (utterance, end)
        if self.options.interim_results and current and self._endpointer.in_speech and hypothesis.text.strip():
            self._emit_interim(utterance, hypothesis, end, end_candidate=True)
        return hypothesis

    async def _cancel_eager(self) -> None:
        eager, self._eager = self._eager, None
        if eager is not None:
            eager[2].cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await eager[2]

    def _maybe_interim(self) -> None:
        if not self._interim_every or self._interim_task is not None or self._endpointer.pause:
            return
        if self._audio.end - self._last_interim < self._interim_every:
            return
        self._last_interim = self._audio.end
        begin = self._endpointer.start - RATE * PREROLL_MS // 1000
        clip = self._audio.slice(begin, self._audio.end)
        self._interim_task = asyncio.create_task(
            self._interim(self._utterance, clip, ms(max(begin, 0)), self._audio.end), name="stt-interim"
        )

    async def _interim(self, utterance: int, clip: np.ndarray, offset_ms: int, end: int) -> None:
        try:
            hypothesis = await self._decode(clip, offset_ms, False)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a failed interim fails the stream: never swallow errors
            self._events.put_nowait(exc)
            return
        finally:
            if self._interim_task is asyncio.current_task():
                self._interim_task = None
        if utterance != self._utterance or not self._endpointer.in_speech or not hypothesis.text.strip():
            return
        self._emit_interim(utterance, hypothesis, end)

    def _emit_interim(self, utterance: int, hypothesis: Hypothesis, end: int, *, end_candidate: bool = False) -> None:
        if end <= self._interim_end and not end_candidate:
            return  # an interim of this much audio went out already: times only move forward
        # An end candidate ends where the speech paused: an interim started just before the VAD saw the pause may
        # have covered a few frames of it already, and the candidate still goes out (its end is the pause's start).
        self._interim_end = max(self._interim_end, end)
        text, stable = self._prefix.update(hypothesis.text.strip())
        self._events.put_nowait(TranscriptEvent(
            utterance_id=utterance, text=text, final=False, stable_text=stable,
            start_ms=ms(self._endpointer.start), end_ms=ms(end), words=hypothesis.words,
            confidence=hypothesis.confidence, language=hypothesis.language or self.options.language,
            end_candidate=end_candidate,
        ))

    async def _cancel_interim(self) -> None:
        task, self._interim_task = self._interim_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _finish(self, boundary: Boundary) -> None:
        """Decode the whole utterance and send FINAL, then SPEECH_ENDED."""
        await self._cancel_interim()
        start = boundary.start
        if self._eager is not None and self._eager[:2] == (self._utterance, boundary.position):
            task, self._eager = self._eager[2], None
            hypothesis = await task
        else:
            await self._cancel_eager()
            clip, offset = self._clip(start, boundary.position)
            hypothesis = await self._decode(clip, offset, True)
        self._events.put_nowait(TranscriptEvent(
            utterance_id=self._utterance, text=hypothesis.text.strip(), final=True, start_ms=ms(start),
            end_ms=ms(boundary.position), words=hypothesis.words, confidence=hypothesis.confidence,
            language=hypothesis.language or self.options.language,
        ))
        self._events.put_nowait(SpeechEndedEvent(self._utterance, ms(boundary.position)))
