"""The providers' own Python SDKs against the loopback doubles: the doubles speak the real protocols.

Each test drives the official streaming client (``cartesia``, ``elevenlabs`` on
PyPI) exactly as its documentation shows, so a double that drifted from the
wire format (URL, auth header, message shapes, event order, the close) fails
here, not only our backend against it.
"""

from __future__ import annotations

import asyncio
import ssl

import numpy as np
import pytest

from tests.providers.cartesia_double import CartesiaDouble
from tests.providers.elevenlabs_double import ElevenLabsDouble
from tests.reliability.certs import issue, make_ca
from tests.tts.helpers import transcribe

pytestmark = pytest.mark.slow

VOICE = "9626c31c-bec5-4cca-baa8-f8ba9e84c8bc"


async def test_the_cartesia_sdk_streams_continuations_with_flushes_and_timestamps():
    from cartesia import AsyncCartesia

    double = CartesiaDouble(api_key="sk-sdk").start()
    events = []
    try:
        client = AsyncCartesia(api_key="sk-sdk", websocket_base_url=double.base_url)
        async with client.tts.websocket_connect() as connection:
            ctx = connection.context(model_id="sonic-2", voice={"mode": "id", "id": VOICE},
                                     output_format={"container": "raw", "encoding": "pcm_f32le", "sample_rate": 16000},
                                     add_timestamps=True)
            await ctx.push("Turn off the lights ")
            await ctx.push("in the kitchen.", flush=True)
            await ctx.push("What time is it?")
            await ctx.no_more_inputs()
            events = [event async for event in ctx.receive()]
        await client.close()
    finally:
        double.stop()
    kinds = [e.type for e in events]
    assert kinds[-1] == "done" and "flush_done" in kinds and "timestamps" in kinds
    audio = {1: bytearray(), 2: bytearray()}
    for event in events:
        if event.type == "chunk":
            audio[event.flush_id].extend(event.audio)
    words = [w for e in events if e.type == "timestamps" for w in e.word_timestamps.words]
    assert words == "Turn off the lights in the kitchen. What time is it?".split()
    heard = [transcribe((np.frombuffer(bytes(audio[k]), "<f4") * 32767).astype("<i2").tobytes()).lower()
             for k in (1, 2)]
    assert "lights" in heard[0] and "kitchen" in heard[0] and "time" in heard[1]
    # The SDK's own headers passed the double's checks: a bearer key and its Cartesia-Version.
    assert double.headers[0]["Authorization"] == "Bearer sk-sdk" and double.headers[0]["cartesia-version"]


@pytest.fixture
def tls_files(tmp_path, monkeypatch):
    ca = make_ca(tmp_path)
    leaf = issue(ca, tmp_path, "elevenlabs")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf.cert, leaf.key)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.cert))  # the SDK opens wss:// with the default trust store
    return context


async def test_the_elevenlabs_sdk_streams_input_and_reads_to_is_final(tls_files):
    from elevenlabs.client import ElevenLabs

    double = ElevenLabsDouble(api_key="xi-sdk", tls=tls_files).start()
    try:
        client = ElevenLabs(api_key="xi-sdk", base_url=f"https://127.0.0.1:{double.port}")

        def speak() -> bytes:
            parts = iter(["Turn off ", "the lights ", "in the kitchen."])
            return b"".join(client.text_to_speech.convert_realtime(
                voice_id="21m00Tcm4TlvDq8ikWAM", text=parts, model_id="eleven_flash_v2_5", output_format="pcm_16000"))

        pcm = await asyncio.to_thread(speak)
    finally:
        double.stop()
    [socket] = double.connections
    assert socket.headers["xi-api-key"] == "xi-sdk" and socket.final_sent
    assert socket.messages[0]["text"] == " " and socket.messages[-1] == {"text": ""}
    heard = transcribe(pcm).lower()
    assert "lights" in heard and "kitchen" in heard
