"""One synthesis stream: text pieces in, tagged audio chunks out (no protobuf here).

Three parties share a stream. The reader task takes the client's inputs,
cuts them into segments (``Segmenter``) and handles Flush and Cancel. The
worker task synthesizes queued segments one after the other and cuts their
audio into chunks. ``run`` (the consumer) hands the events to the servicer
and counts the audio offsets, so offsets only count audio really sent.

Cancel bumps an epoch: the worker is cancelled and awaited, every event of
the old epoch still queued is dropped by the consumer, then ``Cancelled`` is
queued. So no audio from before a cancel follows its acknowledgement, and the
stream goes on with a new worker.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum

from voicemesh.errors import InvalidInput
from voicemesh.services.tts.backend import TtsBackend, VoiceOptions, WordTime
from voicemesh.speech.segmenter import Segment, Segmenter

log = logging.getLogger(__name__)

QUEUE_EVENTS = 64  # events the worker may run ahead of the client (about 6 s of audio)


class Control(Enum):
    """Inputs other than text."""

    FLUSH = "flush"
    CANCEL = "cancel"


@dataclass(frozen=True)
class Chunk:
    """Audio of one segment; ``offset`` is its first sample in all audio sent on the stream."""

    audio: bytes
    segment: Segment
    segment_offset: int
    offset: int = -1


@dataclass(frozen=True)
class WordSpan:
    """A timed word: its characters in all text of the stream, its samples from the segment's start."""

    word: str
    char_start: int
    char_end: int
    start_samples: int
    end_samples: int


@dataclass(frozen=True)
class SegmentFinished:
    """All audio of a segment has been sent; ``words`` when the provider timed them."""

    segment: Segment
    samples: int
    words: tuple[WordSpan, ...] = ()


@dataclass(frozen=True)
class Cancelled:
    """A cancel was carried out."""

    dropped_characters: int


@dataclass(frozen=True)
class Finished:
    """The input ended and everything was spoken."""

    characters: int
    samples: int


Event = Chunk | SegmentFinished | Cancelled | Finished


@dataclass(frozen=True)
class StreamLimits:
    """Sizes a stream accepts and produces."""

    chunk_ms: int = 100
    max_pending_chars: int = 16384
    max_segment_chars: int = 250
    first_clause_min_chars: int = 16
    first_words: int = 4


class SynthesisStream:
    """Runs one Synthesize stream over a loaded backend."""

    def __init__(self, backend: TtsBackend, options: VoiceOptions, limits: StreamLimits):
        self.backend = backend
        self.options = options
        self.limits = limits
        self.segmenter = Segmenter(
            max_chars=limits.max_segment_chars, first_clause_min_chars=limits.first_clause_min_chars,
            first_words=limits.first_words,
        )
        self._chunk_bytes = max(1, options.sample_rate_hz * limits.chunk_ms // 1000) * 2
        self._out: asyncio.Queue = asyncio.Queue(QUEUE_EVENTS)
        self._pending: collections.deque[Segment] = collections.deque()
        self._unconfirmed: dict[int, Segment] = {}  # queued or speaking, SegmentDone not sent yet
        self._wake = asyncio.Event()
        self._input_ended = False
        self._epoch = 0
        self._characters = 0
        self._worker: asyncio.Task | None = None
        self.session = backend.open_session(options)

    @property
    def characters(self) -> int:
        """Characters of the segments synthesis has started on, each with its ``lead`` (what the stream's Usage
        counts)."""
        return self._characters

    async def run(self, inputs: AsyncIterator[str | Control]) -> AsyncIterator[Event]:
        """Events for the client until the input ends and all is spoken (or an error)."""
        sent_samples, finished = 0, False
        reader = asyncio.create_task(self._read(inputs), name="tts-reader")
        self._worker = self._start_worker()
        try:
            while True:
                epoch, event = await self._out.get()
                if isinstance(event, BaseException):
                    raise event
                if epoch != self._epoch:
                    continue  # audio or segment end of a cancelled epoch
                if isinstance(event, Chunk):
                    event = dataclasses.replace(event, offset=sent_samples)
                    sent_samples += len(event.audio) // 2
                elif isinstance(event, SegmentFinished):
                    self._unconfirmed.pop(event.segment.index, None)
                elif isinstance(event, Finished):
                    event = Finished(characters=self._characters, samples=sent_samples)
                yield event
                if isinstance(event, Finished):
                    finished = True
                    return
        finally:
            if not finished:
                log.info("synthesis stream stopped early: %d segments unspoken, %d characters unsegmented",
                         len(self._unconfirmed), self.segmenter.buffered)
            tasks = [task for task in (reader, self._worker) if task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.session.aclose()

    async def _read(self, inputs: AsyncIterator[str | Control]) -> None:
        try:
            async for item in inputs:
                if item is Control.CANCEL:
                    await self._cancel()
                elif item is Control.FLUSH:
                    self._enqueue(self.segmenter.flush())
                else:
                    self._check_size(item)
                    self._enqueue(self.segmenter.push(item))
            self._enqueue(self.segmenter.flush())
            self._input_ended = True
            self._wake.set()
        except Exception as exc:  # handed to the consumer, which raises it as the stream's status
            await self._out.put((None, exc))

    def _check_size(self, text: str) -> None:
        waiting = self.segmenter.buffered + sum(len(s.text) for s in self._unconfirmed.values())
        limit = self.limits.max_pending_chars
        if waiting + len(text) > limit:
            raise InvalidInput(
                f"text beyond the size limit: {waiting + len(text)} characters would wait to be spoken, "
                f"the limit is {limit}; send text as it is needed (or Cancel)"
            )

    def _enqueue(self, segments: list[Segment]) -> None:
        for segment in segments:
            self._pending.append(segment)
            self._unconfirmed[segment.index] = segment
        if segments:
            self._wake.set()

    async def _cancel(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
        await self.session.cancel()  # the provider's context too: nothing it still makes may be spoken
        dropped = self.segmenter.clear() + sum(len(s.text) for s in self._unconfirmed.values())
        self._pending.clear()
        self._unconfirmed.clear()
        self._epoch += 1
        self._worker = self._start_worker()
        await self._out.put((self._epoch, Cancelled(dropped)))
        log.info("synthesis cancelled, %d characters dropped", dropped)

    def _start_worker(self) -> asyncio.Task:
        return asyncio.create_task(self._work(self._epoch), name=f"tts-worker-{self._epoch}")

    async def _work(self, epoch: int) -> None:
        try:
            while True:
                while not self._pending:
                    if self._input_ended:
                        await self._out.put((epoch, Finished(characters=0, samples=0)))
                        return
                    self._wake.clear()
                    await self._wake.wait()
                segment = self._pending.popleft()
                await self._speak(segment, epoch)
        except Exception as exc:  # handed to the consumer, which raises it as the stream's status
            await self._out.put((None, exc))

    async def _speak(self, segment: Segment, epoch: int) -> None:
        self._characters += segment.billed
        log.debug("synthesizing segment %d (%d characters)", segment.index, len(segment.text))
        size, done, carry = self._chunk_bytes, 0, b""
        audio = self.session.speak(segment.text)
        try:
            async for piece in audio:
                carry += piece
                # The segment's first audio goes out as soon as it is made, even shorter than a chunk (a voice's
                # first few frames); the rest in chunks of ``size``, so a provider's small pieces are not each a
                # message. Only an odd byte waits for its sample's other half.
                if done == 0 and 1 < len(carry) < size:
                    n = len(carry) - len(carry) % 2
                    await self._out.put((epoch, Chunk(carry[:n], segment, 0)))
                    carry, done = carry[n:], n
                while len(carry) >= size:
                    await self._out.put((epoch, Chunk(carry[:size], segment, done // 2)))
                    carry, done = carry[size:], done + size
            if carry:
                await self._out.put((epoch, Chunk(carry, segment, done // 2)))
                done += len(carry)
            words = word_spans(segment, self.session.words, self.options.sample_rate_hz, done // 2)
            await self._out.put((epoch, SegmentFinished(segment, done // 2, words)))
        except asyncio.CancelledError:
            log.debug("segment %d cut off after %d samples", segment.index, done // 2)
            raise
        finally:
            await audio.aclose()


def word_spans(segment: Segment, words: list[WordTime], rate: int, samples: int) -> tuple[WordSpan, ...]:
    """The timed words of ``segment`` found in its text, in order (a word the text lacks is left out)."""
    spans, at = [], 0
    for word in words:
        found = segment.text.find(word.word, at)
        if not word.word or found < 0:
            continue  # the provider normalized it ("2" spoken as "two"): no span of the text to give
        at = found + len(word.word)
        start = min(samples, max(0, round(word.start_s * rate)))
        spans.append(WordSpan(word.word, segment.char_start + found, segment.char_start + at, start,
                              min(samples, max(start, round(word.end_s * rate)))))
    return tuple(spans)
