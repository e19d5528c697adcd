"""Client side of the realtime tests: one Converse stream driven from asyncio."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import grpc

from voicemesh.audio import chunks
from voicemesh.v1 import common_pb2, realtime_pb2, realtime_pb2_grpc

R = realtime_pb2.ConverseRequest


def session(model: str = "voicemesh/cascade", *, rate: int = 16000, out_rate: int = 16000, vad: bool = True,
            silence_ms: int = 600, interrupt: bool = True, modalities: Iterable[str] = ("text", "audio"),
            instructions: str = "",
            backend: common_pb2.BackendOptions | None = None) -> R:
    config = realtime_pb2.RealtimeSessionConfig(
        model=model, instructions=instructions, input_sample_rate_hz=rate, output_sample_rate_hz=out_rate,
        modalities=list(modalities), backend=backend)
    if vad:
        config.turn_detection.CopyFrom(realtime_pb2.ServerVad(
            threshold=0.5, prefix_padding_ms=300, silence_duration_ms=silence_ms, create_response=True,
            interrupt_response=interrupt))
    return R(session_update=config)


class Conversation:
    """A Converse call fed from a queue; ``events`` keeps everything received."""

    def __init__(self, address: str, first: R, timeout: float = 180, metadata: list | None = None):
        self.channel = grpc.aio.insecure_channel(address)
        self._requests: asyncio.Queue = asyncio.Queue()
        self._requests.put_nowait(first)
        self.call = realtime_pb2_grpc.RealtimeServiceStub(self.channel).Converse(self._gen(), timeout=timeout,
                                                                                    metadata=metadata)
        self.events: list[realtime_pb2.ConverseResponse] = []

    async def _gen(self):
        while (request := await self._requests.get()) is not None:
            yield request

    def send(self, **fields) -> None:
        self._requests.put_nowait(R(**fields))

    def send_request(self, request: R) -> None:
        self._requests.put_nowait(request)

    def send_audio(self, pcm: bytes, rate: int = 16000, ms: int = 100) -> None:
        for chunk in chunks(pcm, rate=rate, ms=ms):
            self.send(input_audio_append=chunk)

    async def stream_audio(self, pcm: bytes, rate: int = 16000, ms: int = 100, speed: float = 4.0) -> None:
        """Send audio paced at ``speed`` times real time (so the server reacts while it arrives)."""
        for chunk in chunks(pcm, rate=rate, ms=ms):
            self.send(input_audio_append=chunk)
            await asyncio.sleep(ms / 1000 / speed)

    def end(self) -> None:
        self._requests.put_nowait(None)

    async def next(self, timeout: float = 120) -> realtime_pb2.ConverseResponse:
        event = await asyncio.wait_for(self.call.read(), timeout)
        if event is grpc.aio.EOF:
            raise EOFError("the stream ended")
        self.events.append(event)
        return event

    async def until(self, kind: str, timeout: float = 120, **match) -> realtime_pb2.ConverseResponse:
        """Read events until one of ``kind`` whose fields equal ``match``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            event = await self.next(max(0.1, deadline - loop.time()))
            if event.WhichOneof("event") == kind:
                body = getattr(event, kind)
                if all(getattr(body, k) == v for k, v in match.items()):
                    return event

    async def rest(self, timeout: float = 120) -> None:
        """Read until the server ends the stream."""
        try:
            while True:
                await self.next(timeout)
        except EOFError:
            pass

    def of(self, kind: str) -> list:
        return [getattr(e, kind) for e in self.events if e.WhichOneof("event") == kind]

    def audio(self, response_id: str) -> bytes:
        return b"".join(d.audio for d in self.of("audio_delta") if d.response_id == response_id)

    def text(self, response_id: str, transcript: bool) -> str:
        return "".join(d.delta for d in self.of("text_delta")
                       if d.response_id == response_id and d.audio_transcript == transcript)

    async def close(self) -> None:
        self.end()
        self.call.cancel()
        await self.channel.close()


async def status_of(conversation: Conversation, timeout: float = 120) -> tuple[grpc.StatusCode, str]:
    """Read until the stream fails; return its status."""
    try:
        await conversation.rest(timeout)
    except grpc.aio.AioRpcError as error:
        return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""
