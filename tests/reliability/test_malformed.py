"""Requests that are not valid protobuf messages get INVALID_ARGUMENT, on streams and unary calls alike.

grpc parses a request before the servicer sees it; a parse failure must be the client's bad input
(INVALID_ARGUMENT with a message), not an internal error with a traceback in the server's log.
"""

from __future__ import annotations

import grpc
import pytest

from tests.reliability.test_limits import TTS_ARGS, speak
from tests.tts.helpers import config, text

pytestmark = pytest.mark.slow

CORRUPT = b"\xff\xff\xff\xff\x0f garbage"  # a varint tag that runs off the end of the message


def _non_utf8_text() -> bytes:
    """A SynthesizeRequest whose text field holds bytes that are not UTF-8."""
    wire = text("AB").SerializeToString()
    assert wire.count(b"AB") == 1
    return wire.replace(b"AB", b"\xff\xfe")


def _raw(channel: grpc.aio.Channel, method: str, *, stream: bool):
    identity = {"request_serializer": lambda b: b, "response_deserializer": lambda b: b}
    if stream:
        return channel.stream_stream(f"/voicemesh.v1.TtsService/{method}", **identity)
    return channel.unary_unary(f"/voicemesh.v1.TtsService/{method}", **identity)


@pytest.mark.parametrize("bad", [CORRUPT, _non_utf8_text()], ids=["corrupt-wire-format", "non-utf8-text"])
async def test_unparseable_stream_request_is_invalid_argument(service_process, bad):
    proc = service_process("tts", args=TTS_ARGS)
    async with grpc.aio.insecure_channel(proc.address) as channel:
        call = _raw(channel, "Synthesize", stream=True)(iter([config().SerializeToString(), bad]))
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for _ in call:
                pass
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "not a valid protobuf message" in info.value.details()
        with pytest.raises(grpc.aio.AioRpcError) as unary:
            await _raw(channel, "Describe", stream=False)(CORRUPT)
        assert unary.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    log = proc.log_path.read_text()
    assert "Traceback" not in log and "internal error" not in log
    assert await speak(proc.address) > 8000  # and the service goes on serving
