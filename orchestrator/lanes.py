"""Streams from a session to the model services: one wrapper per service call.

Each wrapper owns its gRPC call. A read cancelled mid-way cancels a grpc.aio
call, so a stream that must outlive one reader (the LLM Chat stream of a
session) is read by its own task into a queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

import grpc

from voicemesh.errors import Unavailable, VoiceMeshError
from voicemesh.orchestrator.clients import MeshClients, backend_options
from voicemesh.orchestrator.fallback import Target
from voicemesh.runtime.status import detail_of
from voicemesh.v1 import common_pb2, llm_pb2, realtime_pb2, stt_pb2, tts_pb2

log = logging.getLogger(__name__)

# What a call to a model service raises when it failed or already ended.
BROKEN = (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError, VoiceMeshError)


def closed_for_idling(exc: BaseException | None) -> bool:
    """Whether a stream's end is the service closing it for idling (--idle-timeout-s), not a failure."""
    return isinstance(exc, grpc.aio.AioRpcError) and getattr(detail_of(exc), "reason", "") == "IDLE_TIMEOUT"


class _Call:
    """A bidirectional call written with ``write`` and read with ``responses``."""

    def __init__(self, call: grpc.aio.StreamStreamCall, target: Target):
        self.call = call
        self.target = target
        self.closed_for_writing = False

    async def write(self, message) -> None:
        if self.call.done():
            raise Unavailable(f"{self.target}: the stream has already ended")
        try:
            await self.call.write(message)
        except (grpc.aio.UsageError, asyncio.InvalidStateError) as exc:  # it ended meanwhile
            raise Unavailable(f"{self.target}: the stream has already ended") from exc

    async def done_writing(self) -> None:
        if not self.closed_for_writing:
            self.closed_for_writing = True
            await self.call.done_writing()

    async def responses(self) -> AsyncIterator:
        while True:
            response = await self.call.read()
            if response is grpc.aio.EOF:
                return
            yield response

    def cancel(self) -> None:
        self.call.cancel()


class AudioPump:
    """The user's audio for one stream, written by its own task.

    What accumulated since the last write goes as one message (at most
    ``step`` bytes): the session's loop never waits for a write, and a slow
    stream gets fewer, larger messages instead of a growing backlog.
    """

    def __init__(self, write, done_writing, *, step: int, spawn, name: str):
        self._write, self._done_writing, self._step = write, done_writing, step
        self.pending = bytearray()
        self._wake = asyncio.Event()
        self._ending = self._stopped = False
        spawn(self._run(), name)

    def put(self, pcm: bytes) -> None:
        self.pending += pcm
        self._wake.set()

    def end(self) -> None:
        """Write what is queued, then half-close the stream."""
        self._ending = True
        self._wake.set()

    def stop(self) -> bytes:
        """Stop writing (the stream is replaced or closed); returns the audio not yet written."""
        self._stopped = True
        self._wake.set()
        left, self.pending = bytes(self.pending), bytearray()
        return left

    async def _run(self) -> None:
        while not self._stopped:
            if not self.pending:
                if self._ending:
                    with contextlib.suppress(*BROKEN):
                        await self._done_writing()  # the service finishes what it heard, reports usage, ends
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            piece = bytes(self.pending[:self._step])
            del self.pending[:self._step]
            with contextlib.suppress(*BROKEN):  # a broken stream is reported by its reader
                await self._write(piece)


class SttLane(_Call):
    """The session's Recognize stream."""

    # Bytes of audio written to the stream, and whether its Usage came: a stream that dies with its service
    # is billed from what was written (``voicemesh.runtime.auth.record_sent``, under ``stream_id``).
    sent_bytes = 0
    reported = False
    stream_id = ""

    @classmethod
    async def open(cls, clients: MeshClients, target: Target, metadata, *, rate: int, min_silence_ms: int) -> SttLane:
        stream_id = uuid.uuid4().hex
        call = clients.stub("stt", target.address).Recognize(metadata=(*metadata, ("x-stream-id", stream_id)))
        lane = cls(call, target)
        lane.stream_id = stream_id
        await lane.write(stt_pb2.RecognizeRequest(config=stt_pb2.RecognitionConfig(
            model=target.descriptor, sample_rate_hz=rate, interim_results=True,
            endpointing=stt_pb2.Endpointing(min_silence_ms=min_silence_ms),
            backend=backend_options(target.candidate),
        )))
        return lane

    async def audio(self, pcm: bytes) -> None:
        await self.write(stt_pb2.RecognizeRequest(audio=pcm))
        self.sent_bytes += len(pcm)


class TtsLane(_Call):
    """One reply's Synthesize stream (opened for it, or ahead of it by ``warm.WarmVoice``)."""

    sent_chars = 0  # text written, for billing a stream that dies with its service (as SttLane.sent_bytes)
    reported = False
    stream_id = ""
    # Once all text is written: the offset after its last word. The stream is half-closed (Usage, end) only
    # when the segment speaking that word is done, so until then a barge-in can still Cancel what is queued.
    speak_until: int | None = None
    spoken_to = 0  # end of the text of the last segment done

    @classmethod
    async def open(cls, clients: MeshClients, target: Target, metadata, *, rate: int) -> TtsLane:
        stream_id = uuid.uuid4().hex
        call = clients.stub("tts", target.address).Synthesize(metadata=(*metadata, ("x-stream-id", stream_id)))
        lane = cls(call, target)
        lane.stream_id = stream_id
        try:
            await lane.write(tts_pb2.SynthesizeRequest(config=tts_pb2.SynthesisConfig(
                voice=target.descriptor, sample_rate_hz=rate, speed=target.candidate.speed,
                backend=backend_options(target.candidate),
            )))
        except BaseException:  # cancelled (a stream opened ahead and no longer wanted) or broken: end the call
            call.cancel()
            raise
        return lane

    async def text(self, text: str) -> None:
        if text and not self.closed_for_writing:
            await self.write(tts_pb2.SynthesizeRequest(text=text))
            self.sent_chars += len(text)

    async def end_text(self, text: str) -> None:
        """``text`` is all there is: Flush it; half-close now if no word is left to speak (``segment_done``)."""
        self.speak_until = next((i + 1 for i in range(len(text) - 1, -1, -1) if text[i].isalnum()), 0)
        if self.spoken_to >= self.speak_until:
            await self.done_writing()
        elif not self.closed_for_writing:
            await self.write(tts_pb2.SynthesizeRequest(flush=common_pb2.Flush()))

    async def segment_done(self, char_end: int) -> None:
        """A segment was spoken up to ``char_end``: after the last one the stream is half-closed (Usage follows)."""
        self.spoken_to = max(self.spoken_to, char_end)
        if self.speak_until is not None and self.spoken_to >= self.speak_until:
            await self.done_writing()

    async def stop(self) -> None:
        """Drop buffered text and stop audio at once."""
        if not self.closed_for_writing:
            await self.write(tts_pb2.SynthesizeRequest(cancel=common_pb2.Cancel()))


class LlmLane(_Call):
    """The session's Chat stream, read by its own task.

    ``synced`` is how many messages of the session's history the server
    holds as the session does (None: unknown, send the whole history with
    replace_history).
    """

    def __init__(self, call: grpc.aio.StreamStreamCall, target: Target):
        super().__init__(call, target)
        self.synced: int | None = None
        self.queue: asyncio.Queue = asyncio.Queue()
        self.unfinished: str | None = None  # a generation whose Done was not read yet
        self.on_done = None  # callback(generation_id, ChatDone), for usage reports
        self._reader = asyncio.create_task(self._read(), name=f"llm-reader-{target}")

    @classmethod
    async def open(cls, clients: MeshClients, target: Target, metadata, *, max_tokens: int) -> LlmLane:
        call = clients.stub("llm", target.address).Chat(metadata=metadata)
        lane = cls(call, target)
        sampling = llm_pb2.Sampling(max_tokens=max_tokens) if max_tokens > 0 else llm_pb2.Sampling()
        await lane.write(llm_pb2.ChatRequest(config=llm_pb2.ChatConfig(
            model=target.descriptor, sampling=sampling, backend=backend_options(target.candidate),
        )))
        return lane

    async def _read(self) -> None:
        try:
            async for response in self.responses():
                self.queue.put_nowait(response)
            self.queue.put_nowait(Unavailable(f"{self.target}: the LLM service ended the chat stream"))
        except grpc.aio.AioRpcError as exc:
            self.queue.put_nowait(exc)
        except asyncio.CancelledError:
            self.queue.put_nowait(Unavailable(f"{self.target}: chat stream closed"))
            raise

    async def generate(self, generation_id: str, messages: list[llm_pb2.ChatMessage], *, replace: bool,
                       tools: list[llm_pb2.Tool], tool_choice: llm_pb2.ToolChoice | None = None,
                       turn_id: int = 0) -> None:
        await self.settle()
        self.unfinished = generation_id
        await self.write(llm_pb2.ChatRequest(generate=llm_pb2.Generate(
            id=generation_id, messages=messages, replace_history=replace, tools=tools, tool_choice=tool_choice,
            turn_id=turn_id,
        )))

    async def events(self, generation_id: str) -> AsyncIterator[llm_pb2.ChatResponse]:
        """Responses of one generation, up to and including its Done."""
        while True:
            item = await self.queue.get()
            if isinstance(item, BaseException):
                self.queue.put_nowait(item)  # the stream is dead for every later reader too
                raise item
            if item.generation_id != generation_id:
                continue  # the tail of a cancelled generation
            if item.WhichOneof("event") == "done":
                self.unfinished = None
                if self.on_done is not None:
                    self.on_done(generation_id, item.done)
            yield item
            if item.WhichOneof("event") == "done":
                return

    async def cancel_generation(self) -> None:
        """Ask the server to stop the running generation (its Done is read before the next one)."""
        if self.unfinished is not None and not self.call.done():
            with contextlib.suppress(*BROKEN):
                await self.write(llm_pb2.ChatRequest(cancel=common_pb2.Cancel()))
            self.synced = None

    async def settle(self, timeout_s: float = 5.0) -> None:
        """Wait for the Done of a cancelled generation, so only one runs at a time."""
        if self.unfinished is None:
            return
        try:
            async with asyncio.timeout(timeout_s):
                async for _ in self.events(self.unfinished):
                    pass
        except TimeoutError:
            raise Unavailable(f"{self.target}: a cancelled generation did not end within {timeout_s:.0f} s") from None

    async def close(self) -> None:
        self._reader.cancel()
        self.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)


class RealtimeLane(_Call):
    """The session's Converse stream while it runs on a realtime model, read by its own task.

    It opens with a session update (server VAD that answers and lets speech
    interrupt) and the session's history replayed as conversation items, so
    the realtime model knows what was said before the switch.
    """

    pump: AudioPump | None = None  # the user's audio to the stream (set by the session once the stream is up)
    _lock: asyncio.Lock | None = None

    @classmethod
    async def open(cls, clients: MeshClients, target: Target, metadata, *, instructions: str, input_rate: int,
                   output_rate: int, silence_ms: int, interruption: bool, tools: list[llm_pb2.Tool],
                   history: list[llm_pb2.ChatMessage]) -> RealtimeLane:
        call = clients.stub("realtime", target.address).Converse(metadata=metadata)
        lane = cls(call, target)
        await lane.write(realtime_pb2.ConverseRequest(session_update=realtime_pb2.RealtimeSessionConfig(
            model=target.descriptor, instructions=instructions, input_sample_rate_hz=input_rate,
            output_sample_rate_hz=output_rate, modalities=["text", "audio"], tools=tools,
            backend=backend_options(target.candidate),
            turn_detection=realtime_pb2.ServerVad(silence_duration_ms=silence_ms, create_response=True,
                                                  interrupt_response=interruption),
        )))
        for message in history:
            if message.role != "system":  # the instructions went with the session update
                await lane.write(realtime_pb2.ConverseRequest(
                    item_create=realtime_pb2.ConversationItemCreate(item=message)))
        return lane

    @property
    def lock(self) -> asyncio.Lock:
        """The audio writer and the session write in turn (a call takes one write at a time)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    async def send(self, **request) -> None:
        async with self.lock:
            await self.write(realtime_pb2.ConverseRequest(**request))

    async def done_writing(self) -> None:
        async with self.lock:
            await super().done_writing()

    async def audio(self, pcm: bytes) -> None:
        await self.send(input_audio_append=pcm)
