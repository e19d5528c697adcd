"""``elevenlabs/<model>:<voice>`` in a real TTS service process against the loopback ElevenLabs double."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tests.providers.elevenlabs_double import ElevenLabsDouble
from tests.speech import SENTENCES, wer
from tests.tts.helpers import CANCEL, check_tags, config, pieces, read_rest, stub, synthesize, text, transcribe

pytestmark = pytest.mark.slow

KEY = "xi-test"
VOICE = "21m00Tcm4TlvDq8ikWAM"
DESCRIPTOR = f"elevenlabs/eleven_flash_v2_5:{VOICE}"


@pytest.fixture
def eleven():
    double = ElevenLabsDouble(api_key=KEY).start()
    yield double
    double.stop()


async def test_streamed_text_is_one_socket_with_flushes_and_transcribes_back(service_process, eleven):
    server = service_process("tts")
    full = " ".join(SENTENCES[:3])
    requests = [config(DESCRIPTOR, rate=16000, base_url=eleven.base_url, api_key=KEY), *map(text, pieces(full))]
    spoken = check_tags(full, await synthesize(server.address, requests), 16000)
    assert [s.text for s in spoken.segments] == SENTENCES[:3]
    [socket] = eleven.connections
    for _ in range(100):  # the end of input reaches the double just after the stream's end
        if socket.final_sent:
            break
        await asyncio.sleep(0.02)
    assert socket.voice == VOICE and socket.query == {"model_id": "eleven_flash_v2_5", "output_format": "pcm_16000"}
    assert socket.headers["xi-api-key"] == KEY
    assert socket.messages[0]["text"] == " "
    assert [(m["text"], m.get("flush")) for m in socket.messages[1:]] == [
        *((s + " ", True) for s in SENTENCES[:3]), ("", None)]
    pairs = [(s.text, transcribe(bytes(spoken.audio[s.segment_id]))) for s in spoken.segments]
    print(f"\nelevenlabs round trip WER: {wer(pairs):.1%} {pairs}")
    assert wer(pairs) <= 0.10
    assert spoken.usage.model == DESCRIPTOR and spoken.usage.characters == sum(map(len, SENTENCES[:3]))


async def test_barge_in_closes_the_socket_and_no_audio_follows(service_process, eleven):
    server = service_process("tts")
    long = " ".join(SENTENCES)
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = stub(channel).Synthesize()
        await call.write(config(DESCRIPTOR, rate=16000, base_url=eleven.base_url, api_key=KEY))
        for piece in pieces(long):
            await call.write(text(piece))
        before = [await call.read()]
        assert before[0].WhichOneof("event") == "audio"
        await call.write(CANCEL)
        while before[-1].WhichOneof("event") != "cancelled":
            before.append(await call.read())
        await call.write(text(" Turn off the lights."))
        await call.done_writing()
        after = await read_rest(call)
    first, *rest = eleven.connections
    assert first.closed_by_client, "the reply's ElevenLabs socket stayed open after the barge-in"
    assert len(rest) == 1 and rest[0].messages[1]["text"] == "Turn off the lights. "
    audio_after = [r.audio for r in after if r.WhichOneof("event") == "audio"]
    assert audio_after and all(chunk.char_start >= len(long) for chunk in audio_after)
    assert "lights" in transcribe(b"".join(c.audio for c in audio_after)).lower()


async def test_the_operators_eleven_key_and_url_come_from_the_environment(service_process, eleven):
    server = service_process("tts", env={"VOICEMESH_ELEVENLABS_BASE_URL": eleven.base_url, "ELEVEN_API_KEY": KEY})
    line = "The train leaves the station at noon."
    spoken = check_tags(line, await synthesize(server.address, [config(DESCRIPTOR, rate=0), text(line)]), 24000)
    assert spoken.samples > 0 and eleven.connections[0].query["output_format"] == "pcm_24000"


@pytest.mark.parametrize(
    ("fault", "key", "code", "message"),
    [
        ("", "xi-wrong", "UNAUTHENTICATED", "API key was refused"),
        ("quota", KEY, "RESOURCE_EXHAUSTED", "over quota"),
        ("malformed", KEY, "UNAVAILABLE", "malformed frame"),
        ("drop", KEY, "UNAVAILABLE", "code 1006"),
    ],
)
async def test_elevenlabs_failures_get_clear_statuses(service_process, fault, key, code, message):
    double = ElevenLabsDouble(api_key=KEY, fault=fault).start()
    try:
        server = service_process("tts")
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await synthesize(server.address, [config(DESCRIPTOR, base_url=double.base_url, api_key=key),
                                              text("Hello there, how are you today?")])
    finally:
        double.stop()
    assert caught.value.code().name == code, caught.value.details()
    assert message in caught.value.details()
    # What the provider wrote goes to the service's log, never to the client (as with HTTP error bodies).
    assert not any(word in caught.value.details() for word in ("exceeds your quota", "Invalid API key"))
