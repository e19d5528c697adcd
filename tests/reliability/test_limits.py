"""Server limits on a real service process: open streams per process and per key, stream duration,
message size. Each refusal is RESOURCE_EXHAUSTED with a message, and the server keeps serving."""

from __future__ import annotations

import asyncio
import contextlib

import grpc
import pytest

from tests.tts.helpers import FLUSH, JOE, config, text
from voicemesh.metering import keys
from voicemesh.metering.ledger import open_store
from voicemesh.process import health
from voicemesh.v1 import tts_pb2_grpc

pytestmark = pytest.mark.slow

TTS_ARGS = ["--preload", JOE, "--piper-workers", "1"]


class HeldStream:
    """A Synthesize stream that has spoken once and is kept open (no half-close) until ``close``."""

    def __init__(self, address: str, key: str = ""):
        self.address, self.key = address, key
        self._done = asyncio.Event()

    async def _requests(self):
        for request in (config(), text("Hi."), FLUSH):
            yield request
        await self._done.wait()

    async def open(self) -> HeldStream:
        self.channel = grpc.aio.insecure_channel(self.address)
        metadata = [("authorization", f"Bearer {self.key}")] if self.key else None
        self.call = tts_pb2_grpc.TtsServiceStub(self.channel).Synthesize(self._requests(), metadata=metadata)
        await self.call.read()  # the first audio chunk: the server admitted and serves the stream
        return self

    async def close(self) -> None:
        self._done.set()
        self.call.cancel()
        await self.channel.close()


async def speak(address: str, key: str = "") -> int:
    """One complete synthesis; audio bytes received."""
    metadata = [("authorization", f"Bearer {key}")] if key else None
    async with grpc.aio.insecure_channel(address) as channel:
        call = tts_pb2_grpc.TtsServiceStub(channel).Synthesize(iter([config(), text("Still here."), FLUSH]),
                                                               metadata=metadata)
        return sum([len(r.audio.audio) async for r in call if r.WhichOneof("event") == "audio"])


async def refusal(address: str, key: str = "") -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await speak(address, key)
    return info.value


async def test_max_streams_refuses_one_more_stream_and_frees_the_slot_when_one_ends(service_process):
    proc = service_process("tts", args=[*TTS_ARGS, "--max-streams", "2"])
    held = [await HeldStream(proc.address).open() for _ in range(2)]
    try:
        error = await refusal(proc.address)
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-streams 2" in error.details()
        assert health(proc.address) == "SERVING"  # health and unary RPCs are not limited
        await held.pop().close()
        assert await speak(proc.address) > 8000  # the freed slot serves a new stream
    finally:
        for stream in held:
            await stream.close()


async def test_max_stream_duration_ends_a_long_stream_with_a_message(service_process):
    proc = service_process("tts", args=[*TTS_ARGS, "--max-stream-s", "3"])
    held = await HeldStream(proc.address).open()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async with asyncio.timeout(60):
                while await held.call.read() is not grpc.aio.EOF:
                    pass
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-stream-s" in info.value.details()
        assert await speak(proc.address) > 8000
    finally:
        await held.close()


async def test_max_streams_per_key_refuses_that_key_and_not_another(service_process, tmp_path):
    url = f"sqlite:///{tmp_path}/ledger.db"
    store = open_store(url)
    try:
        _, busy_key = keys.create_key(store, "busy")
        _, other_key = keys.create_key(store, "other")
    finally:
        store.close()
    proc = service_process("tts", args=[*TTS_ARGS, "--ledger", url, "--max-streams-per-key", "1"])
    held = await HeldStream(proc.address, busy_key).open()
    try:
        error = await refusal(proc.address, busy_key)
        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "--max-streams-per-key 1" in error.details()
        assert await speak(proc.address, other_key) > 8000
    finally:
        await held.close()
    # The slot is released when the stream ends (the server sees the cancel shortly after).
    for _ in range(50):
        with contextlib.suppress(grpc.aio.AioRpcError):
            assert await speak(proc.address, busy_key) > 8000
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the key's slot was not released after its stream ended")


async def test_oversized_message_gets_resource_exhausted_and_the_server_keeps_serving(service_process):
    proc = service_process("tts", args=[*TTS_ARGS, "--max-message-bytes", "65536"])
    async with grpc.aio.insecure_channel(proc.address) as channel:
        call = tts_pb2_grpc.TtsServiceStub(channel).Synthesize(iter([config(), text("a" * 100_000), FLUSH]))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in info.value.details()
    assert proc.proc.poll() is None
    assert await speak(proc.address) > 8000
