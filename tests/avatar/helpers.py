"""What the avatar tests share: request builders, a live client with arrival times, and frame decoding."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from voicemesh.v1 import avatar_pb2, avatar_pb2_grpc

ADA = "local/ada"
RATE = 16000
FPS = 25
STEP = RATE // FPS  # audio samples per frame
# Where local/ada's mouth is drawn in a square frame (backends/local.py's docstring): rows, columns.
MOUTH = (slice(int(0.60 * 256), int(0.74 * 256)), slice(int(0.40 * 256), int(0.60 * 256)))


def config(avatar: str = ADA, size: int | tuple[int, int] = 256, fps: int = FPS, encoding: str = "i420",
           rate: int = RATE, unpaced: bool = False) -> avatar_pb2.RenderRequest:
    width, height = (size, size) if isinstance(size, int) else size
    return avatar_pb2.RenderRequest(config=avatar_pb2.RenderConfig(
        avatar=avatar, size=avatar_pb2.VideoSize(width=width, height=height), fps=fps, encoding=encoding,
        sample_rate_hz=rate, unpaced=unpaced,
    ))


def audio(pcm: bytes, offset: int) -> avatar_pb2.RenderRequest:
    return avatar_pb2.RenderRequest(audio=avatar_pb2.AvatarAudio(audio=pcm, offset_samples=offset))


def phoneme(name: str, start: int, end: int) -> avatar_pb2.RenderRequest:
    return avatar_pb2.RenderRequest(phoneme=avatar_pb2.PhonemeTiming(phoneme=name, start_samples=start,
                                                                      end_samples=end))


REPLY_END = avatar_pb2.RenderRequest(reply_end=avatar_pb2.ReplyEnd())
CLEAR = avatar_pb2.RenderRequest(clear=avatar_pb2.Clear())


def chunks(pcm: bytes, offset: int = 0, ms: int = 100) -> list[avatar_pb2.RenderRequest]:
    size = 2 * RATE * ms // 1000
    return [audio(pcm[i : i + size], offset + i // 2) for i in range(0, len(pcm), size)]


@dataclass
class Received:
    """Responses with the monotonic time each arrived."""

    events: list[tuple[float, avatar_pb2.RenderResponse]] = field(default_factory=list)

    def frames(self) -> list[avatar_pb2.VideoFrame]:
        return [r.frame for _, r in self.events if r.WhichOneof("event") == "frame"]

    def marks(self) -> list[avatar_pb2.PlaybackFinished]:
        return [r.playback_finished for _, r in self.events if r.WhichOneof("event") == "playback_finished"]

    def usage(self):
        found = [r.usage for _, r in self.events if r.WhichOneof("event") == "usage"]
        assert len(found) == 1, f"{len(found)} usage messages"
        return found[0]


class Live:
    """A Render stream driven by hand: write requests, a background task records every response."""

    def __init__(self, address: str, metadata: tuple = ()):
        self.channel = grpc.aio.insecure_channel(address)
        self.call = avatar_pb2_grpc.AvatarServiceStub(self.channel).Render(metadata=metadata or None)
        self.received = Received()
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for response in self.call:
            self.received.events.append((time.monotonic(), response))

    async def send(self, *requests: avatar_pb2.RenderRequest) -> float:
        for request in requests:
            await self.call.write(request)
        return time.monotonic()

    async def wait_for(self, predicate, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self.received):
            if self.reader.done():
                self.reader.result()  # raises the stream's error
                raise AssertionError("the stream ended before the condition held")
            assert time.monotonic() < deadline, "timed out waiting on the stream"
            await asyncio.sleep(0.005)

    async def finish(self, timeout: float = 30.0) -> Received:
        await self.call.done_writing()
        await asyncio.wait_for(self.reader, timeout)
        await self.channel.close()
        return self.received


async def render(address: str, requests: list[avatar_pb2.RenderRequest]) -> Received:
    """Send every request, half-close, and return every response."""
    live = Live(address)
    await live.send(*requests)
    return await live.finish()


def luma(frame: avatar_pb2.VideoFrame) -> np.ndarray:
    """The Y plane of an I420 frame."""
    y = np.frombuffer(frame.data, np.uint8, frame.width * frame.height)
    return y.reshape(frame.height, frame.width).astype(np.float32)


def envelope(pcm: bytes, offset: int) -> float:
    """RMS of the frame's slice of the audio starting at ``offset``."""
    samples = np.frombuffer(pcm, "<i2")[offset : offset + STEP].astype(np.float32) / 32768
    return float(np.sqrt(np.mean(samples**2))) if len(samples) else 0.0
