"""One response of a cascade session: LLM text, then TTS audio sentence by sentence.

The language model streams text; with audio output a segmenter (the TTS
side's) cuts it into sentences, and each sentence is sent as an audio
transcript delta followed by its audio in short deltas, while the model
keeps generating. Every stretch of audio sent is recorded on the assistant
item as the text span it speaks, so a later truncate can cut the item to
what was heard. Cancelling the task stops the model and the voice at once;
the item then keeps the text whose audio (or text) was sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from voicemesh.errors import ResourceExhausted, VoiceMeshError
from voicemesh.services.llm.backend import (CancelToken, Done, FinishReason, GenerationRequest, LlmBackend,
                                            ToolCallMade)
from voicemesh.services.llm.backend import TextDelta as LlmText
from voicemesh.services.realtime import backend as rt
from voicemesh.services.realtime.conversation import Item
from voicemesh.services.tts.backend import TtsBackend, VoiceOptions
from voicemesh.speech.playout import SpokenSpan
from voicemesh.speech.segmenter import Segment, Segmenter

log = logging.getLogger(__name__)

DELTA_MS = 100
SLOT_RETRIES = 20
SLOT_RETRY_S = 0.05
CANCEL_DRAIN_S = 2.0  # a cancelled generation stops within a token; its Done is awaited at most this long
_END = object()


@dataclass
class ResponseParts:
    """What a response needs from its session."""

    llm: LlmBackend
    tts: TtsBackend
    voice: VoiceOptions
    modalities: tuple[str, ...]
    conversation_key: object  # the LLM's prompt-cache key: one per session
    model: str


class Response:
    """Runs one response; ``run`` emits its events and fills ``item``."""

    def __init__(self, response_id: str, item: Item, parts: ResponseParts, emit):
        self.id = response_id
        self.item = item
        self.parts = parts
        self.emit = emit
        self.cancel = CancelToken()
        self.text = ""  # everything the model generated
        self.sent_chars = 0  # characters of ``text`` delivered (as text, or as spoken audio)
        self.audio_bytes = 0
        self.characters = 0
        self.tool_calls: list = []
        self.done: Done | None = None
        self.request: GenerationRequest | None = None
        self.announced = False  # response.created was emitted

    @property
    def audio(self) -> bool:
        return "audio" in self.parts.modalities

    async def run(self, audio_seconds_in: float, prepare: Callable[[], Awaitable[GenerationRequest]]) -> None:
        """Emit response.created ... response.done (status completed, cancelled or failed).

        ``prepare`` gives the generation request once the conversation is complete.
        """
        self.emit(rt.ResponseCreated(self.id, self.item.id))
        self.announced = True
        status = "completed"
        try:
            self.request = await prepare()
            if self.audio:
                await self._speak()
            else:
                await self._write()
        except asyncio.CancelledError:
            status = "cancelled"
        except VoiceMeshError as exc:
            log.warning("response %s failed: %s", self.id, exc.message)
            self.emit(rt.ErrorEvent.of(exc))
            status = "failed"
        finally:
            self.cancel.cancel()
        self.item.text = self.text[:self.sent_chars].strip()
        self.item.tool_calls = tuple(self.tool_calls)
        if status == "completed" and self.done is not None and self.done.reason is FinishReason.LENGTH:
            status = "incomplete"
        usage = self.done.usage if self.done is not None else None
        rate = self.parts.voice.sample_rate_hz
        self.emit(rt.ResponseDone(self.id, status, rt.Usage(
            audio_seconds_in=audio_seconds_in, audio_seconds_out=self.audio_bytes / 2 / rate,
            input_tokens=usage.input_tokens if usage else 0, output_tokens=usage.output_tokens if usage else 0,
            cached_tokens=usage.cached_tokens if usage else 0, characters=self.characters, model=self.parts.model),
            tuple(self.tool_calls)))

    def cancelled_before_start(self, audio_seconds_in: float) -> None:
        """The events of a response cancelled before it ran."""
        self.emit(rt.ResponseCreated(self.id, self.item.id))
        self.emit(rt.ResponseDone(self.id, "cancelled", rt.Usage(audio_seconds_in=audio_seconds_in,
                                                                 model=self.parts.model)))

    async def _generate(self, on_text) -> None:
        """Feed the model's events to ``on_text``. The model runs in its own task, so a cancelled
        response can still collect the Done of the cut-off generation (it counts its tokens)."""
        queue: asyncio.Queue = asyncio.Queue()
        pump = asyncio.create_task(self._pump(queue), name="realtime-llm-pump")
        try:
            while (event := await queue.get()) is not _END:
                if isinstance(event, BaseException):
                    raise event
                self._on_llm(event, on_text)
        except asyncio.CancelledError:
            self.cancel.cancel()  # the model stops within a token and sends Done
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(pump), CANCEL_DRAIN_S)
            while not queue.empty():
                event = queue.get_nowait()
                if isinstance(event, Done):
                    self.done = event
            raise
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)

    async def _pump(self, queue: asyncio.Queue) -> None:
        parts = self.parts
        try:
            for attempt in range(SLOT_RETRIES + 1):
                events = parts.llm.generate(self.request, session=parts.conversation_key, cancel=self.cancel)
                try:
                    queue.put_nowait(await anext(events))
                    break
                except ResourceExhausted:
                    # a generation cancelled a moment ago (this session's interrupted response) frees its
                    # slot within a token; wait for that rather than fail the new response
                    await events.aclose()
                    if attempt == SLOT_RETRIES:
                        raise
                    await asyncio.sleep(SLOT_RETRY_S)
                except StopAsyncIteration:
                    return
            async with contextlib.aclosing(events):
                async for event in events:
                    queue.put_nowait(event)
        except Exception as exc:  # the consumer raises it
            queue.put_nowait(exc)
        finally:
            queue.put_nowait(_END)

    def _on_llm(self, event: object, on_text) -> None:
        if isinstance(event, LlmText):
            self.text += event.text
            on_text(event.text)
        elif isinstance(event, ToolCallMade):
            self.tool_calls.append(event.call)
        elif isinstance(event, Done):
            self.done = event

    async def _write(self) -> None:
        def on_text(text: str) -> None:
            self.sent_chars = len(self.text)
            self.emit(rt.TextDelta(self.id, self.item.id, text, audio_transcript=False))

        await self._generate(on_text)

    async def _speak(self) -> None:
        segments: asyncio.Queue = asyncio.Queue()
        segmenter = Segmenter()

        def on_text(text: str) -> None:
            for segment in segmenter.push(text):
                segments.put_nowait(segment)

        async def generate() -> None:
            try:
                await self._generate(on_text)
                for segment in segmenter.flush():
                    segments.put_nowait(segment)
            finally:
                segments.put_nowait(_END)

        producer = asyncio.create_task(generate(), name="realtime-llm")
        try:
            while (segment := await segments.get()) is not _END:
                await self._say(segment)
            await producer  # raises what the model raised
        finally:
            producer.cancel()
            await asyncio.gather(producer, return_exceptions=True)

    async def _say(self, segment: Segment) -> None:
        """One sentence: its transcript delta (with the spacing before it), then its audio."""
        rate = self.parts.voice.sample_rate_hz
        self.emit(rt.TextDelta(self.id, self.item.id, self.text[self.sent_chars:segment.char_end],
                               audio_transcript=True))
        start_ms, char_start = self.audio_bytes * 1000 // 2 // rate, self.sent_chars
        step = rate * DELTA_MS // 1000 * 2
        pending = b""
        self.characters += segment.billed
        async with contextlib.aclosing(self.parts.tts.synthesize(segment.text, self.parts.voice)) as audio:
            async for piece in audio:
                pending += piece
                while len(pending) >= step:
                    self._send_audio(pending[:step], SpokenSpan(start_ms, 0, char_start, segment.char_end))
                    pending = pending[step:]
        if pending:
            self._send_audio(pending, SpokenSpan(start_ms, 0, char_start, segment.char_end))

    def _send_audio(self, pcm: bytes, span: SpokenSpan) -> None:
        """Send audio of one sentence; the item's span for that sentence grows with every delta."""
        self.emit(rt.AudioDelta(self.id, self.item.id, pcm))
        self.audio_bytes += len(pcm)
        span = SpokenSpan(span.start_ms, self.audio_bytes * 1000 // 2 // self.parts.voice.sample_rate_hz,
                          span.char_start, span.char_end)
        if self.item.spans and self.item.spans[-1].start_ms == span.start_ms:
            self.item.spans[-1] = span
        else:
            self.item.spans.append(span)
        self.sent_chars = span.char_end
