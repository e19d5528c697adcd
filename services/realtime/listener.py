"""Input audio of a cascade session, over the STT side's backend.

``VadListener`` is server VAD: it feeds the live input into one streaming
recognition (the STT backend's Silero VAD endpointing, with the session's
threshold), so its utterance starts and finals become speech started/stopped,
interim and final input transcription, and user turns. When a turn ends is
the ``TurnDetector``'s (``voicemesh.speech.turn``), as in the orchestrator:
server VAD is its silence policy with the session's silence duration, which
the endpointing waits out, so a final ends the turn. ``BufferListener`` keeps the input until the client commits it and
then transcribes the committed audio. Both report to a ``Sink`` (the
session) and own the tasks they start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Protocol

from voicemesh.errors import InvalidInput
from voicemesh.services.realtime import backend as rt
from voicemesh.services.stt.backend import RecognitionOptions, SpeechStartedEvent, SttBackend, TranscriptEvent
from voicemesh.speech.turn import SilenceTurnDetector

log = logging.getLogger(__name__)

COMMIT_SILENCE_MS = 3000  # a committed buffer is one turn: only a long pause splits it, and the parts are joined


class Sink(Protocol):
    """What a listener tells its session."""

    def emit(self, event: rt.ServerEvent) -> None: ...

    def new_item_id(self) -> str: ...

    def speech_started(self) -> None: ...

    def user_turn(self, item_id: str, text: str, *, from_vad: bool) -> None: ...

    def fail(self, error: BaseException) -> None: ...


async def _drain(queue: asyncio.Queue) -> AsyncIterator[bytes]:
    while (chunk := await queue.get()) is not None:
        yield chunk


class VadListener:
    """Server VAD over one streaming recognition, restarted on commit and clear."""

    def __init__(self, stt: SttBackend, language: str, rate: int, vad: rt.ServerVad, sink: Sink):
        self.stt, self.language, self.rate, self.vad, self.sink = stt, language, rate, vad, sink
        self.turns = SilenceTurnDetector(min_delay_ms=vad.silence_duration_ms, max_delay_ms=vad.silence_duration_ms)
        self.offset_ms = 0  # input before the current recognition
        self._fed = 0  # bytes fed to the current recognition
        self._queue: asyncio.Queue = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._item = ""
        self._sent = ""  # interim text already sent as deltas
        self._start()

    def _start(self) -> None:
        self._queue = asyncio.Queue()
        self._fed = 0
        options = RecognitionOptions(language=self.language, sample_rate_hz=self.rate, interim_results=True,
                                     min_silence_ms=self.turns.stt_silence_ms,
                                     speech_threshold=self.vad.threshold)
        self._task = asyncio.create_task(self._consume(options, self._queue), name="realtime-vad")

    async def _consume(self, options: RecognitionOptions, queue: asyncio.Queue) -> None:
        offset = self.offset_ms
        try:
            async with contextlib.aclosing(self.stt.recognize(options, _drain(queue))) as events:
                async for event in events:
                    self._on(event, offset)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the session fails with it
            self.sink.fail(exc)

    def _on(self, event: object, offset: int) -> None:
        if isinstance(event, SpeechStartedEvent):
            self._item, self._sent = self.sink.new_item_id(), ""
            audio_ms = offset + max(0, event.time_ms - self.vad.prefix_padding_ms)
            self.sink.emit(rt.SpeechStarted(self._item, audio_ms))
            self.sink.speech_started()
        elif isinstance(event, TranscriptEvent) and self._item:
            if not event.final:
                self._interim(event)
                return
            item, self._item = self._item, ""
            self.sink.emit(rt.SpeechStopped(item, offset + event.end_ms))
            self.sink.emit(rt.InputTranscription(item, event.text, final=True))
            # The endpointing waited out the policy's silence before this final: nothing is left to wait.
            self.sink.user_turn(item, event.text, from_vad=True)

    def _interim(self, event: TranscriptEvent) -> None:
        """Send what this hypothesis adds to the text sent so far (its last word, often cut, is held back)."""
        hypothesis = " ".join(event.text.rstrip(". …").split()[:-1])
        candidate = max(event.stable_text, hypothesis, key=len)
        if candidate.startswith(self._sent) and len(candidate) > len(self._sent):
            delta, self._sent = candidate[len(self._sent):], candidate
            self.sink.emit(rt.InputTranscription(self._item, delta, final=False))

    def append(self, audio: bytes) -> None:
        self._fed += len(audio)
        self._queue.put_nowait(audio)

    async def commit(self) -> None:
        """End the running recognition (an open utterance gets its final now) and start a new one."""
        self._queue.put_nowait(None)
        if self._task is not None:
            await asyncio.wait({self._task})
        self.offset_ms += self._fed * 1000 // 2 // self.rate
        self._start()

    async def clear(self) -> None:
        """Drop the audio not yet turned into an item."""
        await self.close()
        self.offset_ms += self._fed * 1000 // 2 // self.rate
        self._item = ""
        self._start()

    async def finish(self) -> None:
        """The input ended: let an open utterance end as a turn."""
        self._queue.put_nowait(None)
        if self._task is not None:
            await asyncio.wait({self._task})

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


class BufferListener:
    """No turn detection: input waits in a buffer until the client commits it."""

    def __init__(self, stt: SttBackend, language: str, rate: int, sink: Sink, max_seconds: float):
        self.stt, self.language, self.rate, self.sink = stt, language, rate, sink
        self.max_bytes = int(max_seconds * rate) * 2
        self._buffer = bytearray()
        self._tasks: set[asyncio.Task] = set()
        self._overflowed = False

    def append(self, audio: bytes) -> None:
        if len(self._buffer) + len(audio) > self.max_bytes:
            if not self._overflowed:  # once per buffer
                self._overflowed = True
                self.sink.emit(rt.ErrorEvent.of(InvalidInput(
                    f"the input audio buffer is full ({self.max_bytes // 2 / self.rate:g} s); audio is dropped "
                    "until it is committed or cleared", reason="INPUT_AUDIO_BUFFER_FULL")))
            return
        self._buffer += audio

    def pending(self) -> list[asyncio.Task]:
        """Transcriptions still running (a response waits for them)."""
        return [t for t in self._tasks if not t.done()]

    async def commit(self) -> None:
        if not self._buffer:
            self.sink.emit(rt.ErrorEvent.of(InvalidInput(
                "the input audio buffer is empty: append audio before committing",
                reason="INPUT_AUDIO_BUFFER_COMMIT_EMPTY")))
            return
        audio, self._buffer, self._overflowed = bytes(self._buffer), bytearray(), False
        item = self.sink.new_item_id()
        self.sink.user_turn(item, "", from_vad=False)  # keeps its place in the conversation until transcribed
        task = asyncio.create_task(self._transcribe(item, audio), name="realtime-commit")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _transcribe(self, item: str, audio: bytes) -> None:
        options = RecognitionOptions(language=self.language, sample_rate_hz=self.rate,
                                     min_silence_ms=COMMIT_SILENCE_MS)
        step = self.rate // 10 * 2  # 100 ms pieces, as a live stream would bring them

        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(audio), step):
                yield audio[start:start + step]

        texts: list[str] = []
        try:
            async with contextlib.aclosing(self.stt.recognize(options, pieces())) as events:
                async for event in events:
                    if isinstance(event, TranscriptEvent) and event.final and event.text:
                        texts.append(event.text)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.sink.fail(exc)
            return
        text = " ".join(texts)
        self.sink.emit(rt.InputTranscription(item, text, final=True))
        self.sink.user_turn(item, text, from_vad=False)

    async def clear(self) -> None:
        self._buffer, self._overflowed = bytearray(), False

    async def finish(self) -> None:
        await asyncio.gather(*self.pending(), return_exceptions=True)

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
