"""One conversation of the local cascade: client events in, server events out.

``CascadeSession.run`` owns every task of the session: the reader of client
events, the listener of input audio (server VAD or committed buffers) and the
running response. User speech that starts while a response runs cancels it
(with ``interrupt_response``); a user turn found by server VAD starts a
response (with ``create_response``). When the client's events end, an open
utterance still becomes a turn and the session ends after the last response.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from voicemesh.errors import InvalidInput, ModelNotFound
from voicemesh.services.llm.backend import GenerationRequest, LlmBackend, Sampling
from voicemesh.services.realtime import backend as rt
from voicemesh.services.realtime.conversation import Conversation, Item
from voicemesh.services.realtime.listener import BufferListener, VadListener
from voicemesh.services.realtime.response import Response, ResponseParts
from voicemesh.services.stt.backend import SttBackend
from voicemesh.services.tts.backend import TtsBackend, VoiceOptions

log = logging.getLogger(__name__)

_END = object()


class CascadeSession:
    """Realtime semantics over in-process STT, LLM and TTS backends."""

    def __init__(self, *, stt: SttBackend, language: str, llm: LlmBackend,
                 voice: Callable[[str], Awaitable[TtsBackend]], options: rt.SessionOptions, sampling: Sampling,
                 model: str, max_input_seconds: float, on_unsent: Callable[[rt.Usage], None]):
        self.stt, self.language, self.llm, self.voice = stt, language, llm, voice
        self.options = options
        self.sampling = sampling
        self.model = model
        self.max_input_seconds = max_input_seconds
        self.on_unsent = on_unsent
        self.conversation = Conversation()
        self.out: asyncio.Queue = asyncio.Queue()
        self.listener: VadListener | BufferListener | None = None
        self.tts: TtsBackend | None = None
        self.response: Response | None = None
        self.response_task: asyncio.Task | None = None
        self.audio_in = 0.0  # input seconds since the last response
        self._responses = 0
        self._audio_in_of_response = 0.0
        self._turn_waiting = False  # a user turn ended during a response it did not interrupt
        self._closing = False

    # ---- the Sink of the listeners --------------------------------------

    def emit(self, event: rt.ServerEvent) -> None:
        self.out.put_nowait(event)

    def fail(self, error: BaseException) -> None:
        self.out.put_nowait(error)

    def new_item_id(self) -> str:
        return self.conversation.new_id()

    def speech_started(self) -> None:
        vad = self.options.turn_detection
        if vad is not None and vad.interrupt_response and self.responding:
            log.info("user speech interrupts response %s", self.response.id if self.response else "")
            self._cancel_soon()

    def user_turn(self, item_id: str, text: str, *, from_vad: bool) -> None:
        item = self.conversation.get(item_id)
        if item is None:
            self.conversation.add(Item(id=item_id, role="user", text=text))
        else:
            item.text = text
        vad = self.options.turn_detection
        if from_vad and text.strip() and vad is not None and vad.create_response:
            if self.responding:  # not interrupted (interrupt_response off): answer once this response is done
                self._turn_waiting = True
            else:
                self._start_response(self.options.modalities)

    # ---- session ----------------------------------------------------------

    @property
    def responding(self) -> bool:
        return self.response_task is not None and not self.response_task.done()

    async def run(self, events: AsyncIterator[rt.ClientEvent]) -> AsyncIterator[rt.ServerEvent]:
        self.tts = await self.voice(self.options.voice)
        self.listener = self._listener(self.options)
        self.emit(rt.SessionUpdated(self.options))
        reader = asyncio.create_task(self._read(events), name="realtime-reader")
        try:
            while (item := await self.out.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self._closing = True
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
            await self._cancel_response()
            if self.listener is not None:
                await self.listener.close()
            self._report_unsent()

    def _report_unsent(self) -> None:
        """Usage the client never got: responses done after it left, input after the last response."""
        while not self.out.empty():
            event = self.out.get_nowait()
            if isinstance(event, rt.ResponseDone):
                self.on_unsent(event.usage)
        if self.audio_in:
            self.on_unsent(rt.Usage(audio_seconds_in=self.audio_in, model=self.model))
            self.audio_in = 0.0

    def _listener(self, options: rt.SessionOptions) -> VadListener | BufferListener:
        if options.turn_detection is not None:
            return VadListener(self.stt, self.language, options.input_sample_rate_hz, options.turn_detection, self)
        return BufferListener(self.stt, self.language, options.input_sample_rate_hz, self, self.max_input_seconds)

    async def _read(self, events: AsyncIterator[rt.ClientEvent]) -> None:
        try:
            async for event in events:
                try:
                    await self._handle(event)
                except (InvalidInput, ModelNotFound) as exc:  # this event is refused; the session goes on
                    self.emit(rt.ErrorEvent.of(exc))
            await self.listener.finish()
            while self.responding:  # a response may start the next one (a turn that waited)
                await asyncio.wait({self.response_task})
            self.out.put_nowait(_END)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.out.put_nowait(exc)

    async def _handle(self, event: rt.ClientEvent) -> None:
        if isinstance(event, rt.AudioAppend):
            self.audio_in += len(event.audio) / 2 / self.options.input_sample_rate_hz
            self.listener.append(event.audio)
        elif isinstance(event, rt.AudioCommit):
            await self.listener.commit()
        elif isinstance(event, rt.AudioClear):
            await self.listener.clear()
        elif isinstance(event, rt.ItemCreate):
            self.conversation.add_message(event.message, event.item_id)
        elif isinstance(event, rt.ResponseCreate):
            if self.responding:
                raise InvalidInput(f"response {self.response.id} is still running: cancel it or wait for its "
                                   "response_done", reason="CONVERSATION_ALREADY_HAS_ACTIVE_RESPONSE")
            self._start_response(event.modalities or self.options.modalities)
        elif isinstance(event, rt.ResponseCancel):
            await self._cancel_response()
        elif isinstance(event, rt.ItemTruncate):
            if self.response is not None and self.responding and self.response.item.id == event.item_id:
                await self._cancel_response()  # the listener stopped playing it: stop producing it too
            item = self.conversation.truncate(event.item_id, event.audio_end_ms)
            self.emit(rt.ItemTruncated(item.id, event.audio_end_ms, item.text))
        elif isinstance(event, rt.ItemDelete):
            if self.response is not None and self.responding and self.response.item.id == event.item_id:
                await self._cancel_response()  # the item being written goes: stop writing it
            self.emit(rt.ItemDeleted(self.conversation.delete(event.item_id).id))
        elif isinstance(event, rt.SessionUpdate):
            await self._update(event.options)

    async def _update(self, options: rt.SessionOptions) -> None:
        if options.voice != self.options.voice:
            self.tts = await self.voice(options.voice)
        if (options.turn_detection != self.options.turn_detection
                or options.input_sample_rate_hz != self.options.input_sample_rate_hz):
            await self.listener.finish()
            await self.listener.close()
            self.listener = self._listener(options)
        self.options = options
        self.emit(rt.SessionUpdated(options))

    def _start_response(self, modalities: tuple[str, ...]) -> None:
        self._responses += 1
        item = self.conversation.add(Item(id=self.conversation.new_id(), role="assistant"))
        pending = self.listener.pending() if isinstance(self.listener, BufferListener) else []
        parts = ResponseParts(
            llm=self.llm, tts=self.tts,
            voice=VoiceOptions(voice="", sample_rate_hz=self.options.output_sample_rate_hz),
            modalities=modalities, conversation_key=self, model=self.model)
        self.response = Response(f"resp_{self._responses:04d}", item, parts, self.emit)
        audio_in, self.audio_in = self.audio_in, 0.0
        self._audio_in_of_response = audio_in
        self.response_task = asyncio.create_task(self._respond(self.response, pending, audio_in),
                                                 name="realtime-response")

    async def _respond(self, response: Response, pending: list[asyncio.Task], audio_in: float) -> None:
        async def prepare() -> GenerationRequest:
            if pending:  # committed audio still being transcribed belongs in the prompt
                await asyncio.gather(*pending, return_exceptions=True)
            return GenerationRequest(messages=self.conversation.messages(self.options.instructions),
                                     tools=self.options.tools, sampling=self.sampling)

        try:
            await response.run(audio_in, prepare)
        except Exception as exc:  # not a backend error (those end the response as failed): the session fails
            self.fail(exc)
            return
        if self._turn_waiting and response is self.response and not self._closing:
            self._turn_waiting = False
            self._start_response(self.options.modalities)

    def _cancel_soon(self) -> None:
        task = self.response_task
        if task is not None and not task.done():
            task.cancel()
            task.add_done_callback(self._check_announced)

    async def _cancel_response(self) -> None:
        task = self.response_task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            self._check_announced(task)

    def _check_announced(self, task: asyncio.Task) -> None:
        response = self.response
        if task is self.response_task and response is not None and not response.announced:
            response.announced = True
            response.cancelled_before_start(self._audio_in_of_response)

