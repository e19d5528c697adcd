"""A test client of AgentService.Session: user audio at real time, every event recorded."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc

from voicemesh.v1 import agent_pb2, agent_pb2_grpc

RATE = 16000  # user audio and agent audio in the tests (what whisper takes)
CHUNK_MS = 20

STT = "faster-whisper/tiny.en:en"
LLM = "llama.cpp/smollm2-135m-instruct"
TTS = "piper/en_US-joe-medium"


def choice(*descriptors: str, speed: float = 0.0) -> agent_pb2.ModelChoice:
    return agent_pb2.ModelChoice(candidates=[agent_pb2.ModelSpec(descriptor=d, speed=speed) for d in descriptors])


def session_config(*, stt=(STT,), llm=(LLM,), tts=(TTS,), **fields) -> agent_pb2.SessionConfig:
    return agent_pb2.SessionConfig(
        instructions=fields.pop("instructions", "You are a helpful assistant. Answer in one short sentence."),
        stt=choice(*stt), llm=choice(*llm), tts=choice(*tts),
        input_sample_rate_hz=RATE, output_sample_rate_hz=RATE, **fields,
    )


@dataclass
class Received:
    """An event and the wall time (monotonic) it arrived."""

    at: float
    kind: str
    event: object


@dataclass
class AgentClient:
    """A Session stream with a real-time audio sender (silence when there is nothing to say)."""

    address: str
    config: agent_pb2.SessionConfig
    metadata: tuple = ()
    events: list[Received] = field(default_factory=list)
    speech_sent_at: list[float] = field(default_factory=list)  # wall time each queued utterance began
    speech_chunks: list[list[float]] = field(default_factory=list)  # per utterance: wall time of each chunk sent

    async def __aenter__(self) -> AgentClient:
        self._channel = grpc.aio.insecure_channel(self.address)
        self._requests: asyncio.Queue = asyncio.Queue()
        self._speech: asyncio.Queue = asyncio.Queue()
        self._new = asyncio.Event()
        self._requests.put_nowait(agent_pb2.SessionRequest(config=self.config))
        self.call = agent_pb2_grpc.AgentServiceStub(self._channel).Session(self._pending(), metadata=self.metadata)
        self._reader = asyncio.create_task(self._read())
        self._sender: asyncio.Task | None = None
        return self

    async def __aexit__(self, *exc) -> None:
        for task in (self._sender, self._reader):
            if task is not None:
                task.cancel()
        self.call.cancel()
        await asyncio.gather(*(t for t in (self._sender, self._reader) if t), return_exceptions=True)
        await self._channel.close()

    async def _pending(self):
        while True:
            request = await self._requests.get()
            if request is None:
                return
            # Audio that queued up while gRPC was busy goes as one message, as a real client would send it.
            while request.WhichOneof("request") == "audio" and not self._requests.empty():
                following = self._requests._queue[0]
                if following is None or following.WhichOneof("request") != "audio" or len(request.audio) >= RATE:
                    break
                request = agent_pb2.SessionRequest(audio=request.audio + self._requests.get_nowait().audio)
            yield request

    async def _read(self) -> None:
        try:
            async for response in self.call:
                kind = response.WhichOneof("event")
                self.events.append(Received(time.monotonic(), kind, getattr(response, kind)))
                self._new.set()
        finally:
            self._new.set()  # wake waiters to see the end

    def send(self, **request) -> None:
        self._requests.put_nowait(agent_pb2.SessionRequest(**request))

    def close(self) -> None:
        """Half-close: no more requests."""
        self._requests.put_nowait(None)

    def start_audio(self) -> None:
        """Stream audio at real time from now on: queued speech, else silence."""
        self._sender = asyncio.create_task(self._send_audio())

    def say(self, pcm: bytes) -> None:
        """Queue user speech (sent at real time after what is queued)."""
        self._speech.put_nowait(pcm)

    async def _send_audio(self) -> None:
        step = RATE * 2 * CHUNK_MS // 1000
        start, sent = time.monotonic(), 0
        current, position = b"", 0
        while True:
            if position >= len(current) and not self._speech.empty():
                current, position = self._speech.get_nowait(), 0
                self.speech_sent_at.append(start + sent * CHUNK_MS / 1000)
                self.speech_chunks.append([])
            if position < len(current):
                self.speech_chunks[-1].append(time.monotonic())
                piece = current[position:position + step].ljust(step, b"\0")
                position += step
            else:
                piece = bytes(step)
            self.send(audio=piece)
            sent += 1
            delay = start + sent * CHUNK_MS / 1000 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)

    async def wait_for(self, predicate, timeout: float = 60.0) -> Received:
        """The first recorded event (old or new) that matches ``predicate``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for item in self.events[seen:]:
                if predicate(item):
                    return item
            seen = len(self.events)
            if self._reader.done():
                self._reader.result()
                raise AssertionError(f"stream ended before the event; got {[e.kind for e in self.events]}")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no such event within {timeout} s; got {[e.kind for e in self.events]}; "
                                     f"errors: {self.of('error')}")
            self._new.clear()
            try:
                await asyncio.wait_for(self._new.wait(), remaining)
            except TimeoutError:
                pass

    async def ended(self, timeout: float = 60.0) -> None:
        """Wait for the server to end the stream (raises its error status, if any)."""
        await asyncio.wait_for(asyncio.shield(self._reader), timeout)

    async def turn_done(self, turn_id: int, timeout: float = 90.0):
        found = await self.wait_for(lambda e: e.kind == "turn_done" and e.event.turn_id == turn_id, timeout)
        return found.event

    def of(self, kind: str, turn_id: int | None = None) -> list:
        return [e.event for e in self.events
                if e.kind == kind and (turn_id is None or getattr(e.event, "turn_id", None) == turn_id)]

    def agent_text(self, turn_id: int) -> str:
        return "".join(t.delta for t in self.of("agent_text", turn_id))

    def agent_audio(self, turn_id: int) -> bytes:
        return b"".join(a.audio for a in self.of("agent_audio", turn_id))

    def metrics(self, turn_id: int):
        found = self.of("metrics", turn_id)
        return found[-1] if found else None
