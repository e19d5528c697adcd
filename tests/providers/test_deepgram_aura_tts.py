"""``deepgram/aura-...`` in a real TTS service process against the loopback Deepgram Aura double."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from tests.providers.deepgram_aura_double import DeepgramAuraDouble
from tests.speech import SENTENCES, wer
from tests.tts.helpers import CANCEL, check_tags, config, pieces, read_rest, stub, synthesize, text, transcribe

pytestmark = pytest.mark.slow

KEY = "dg-test"
DESCRIPTOR = "deepgram/aura-2-thalia-en"


@pytest.fixture
def aura():
    double = DeepgramAuraDouble(api_key=KEY).start()
    yield double
    double.stop()


async def test_streamed_text_is_speak_and_flush_per_segment_and_transcribes_back(service_process, aura):
    server = service_process("tts")
    full = " ".join(SENTENCES[:3])
    requests = [config(DESCRIPTOR, rate=16000, base_url=aura.base_url, api_key=KEY), *map(text, pieces(full))]
    spoken = check_tags(full, await synthesize(server.address, requests), 16000)
    assert [s.text for s in spoken.segments] == SENTENCES[:3]
    for _ in range(100):  # Close reaches the double just after the stream's end
        if aura.messages and aura.messages[-1]["type"] == "Close":
            break
        await asyncio.sleep(0.02)
    assert aura.queries == [{"model": "aura-2-thalia-en", "encoding": "linear16", "sample_rate": "16000"}]
    assert [(m["type"], m.get("text")) for m in aura.messages] == [
        *(step for s in SENTENCES[:3] for step in (("Speak", s), ("Flush", None))), ("Close", None)]
    pairs = [(s.text, transcribe(bytes(spoken.audio[s.segment_id]))) for s in spoken.segments]
    print(f"\ndeepgram aura round trip WER: {wer(pairs):.1%} {pairs}")
    assert wer(pairs) <= 0.10
    assert spoken.usage.model == DESCRIPTOR and spoken.usage.characters == sum(map(len, SENTENCES[:3]))


async def test_barge_in_clears_and_no_audio_follows(service_process, aura):
    server = service_process("tts")
    long = " ".join(SENTENCES)
    async with grpc.aio.insecure_channel(server.address) as channel:
        call = stub(channel).Synthesize()
        await call.write(config(DESCRIPTOR, rate=16000, base_url=aura.base_url, api_key=KEY))
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
    assert aura.clears == 1, "the barge-in did not Clear the Aura stream"
    audio_after = [r.audio for r in after if r.WhichOneof("event") == "audio"]
    assert audio_after and all(chunk.char_start >= len(long) for chunk in audio_after)
    assert "lights" in transcribe(b"".join(c.audio for c in audio_after)).lower()


async def test_the_operators_deepgram_key_and_url_come_from_the_environment(service_process, aura):
    server = service_process("tts", env={"VOICEMESH_DEEPGRAM_BASE_URL": aura.base_url, "DEEPGRAM_API_KEY": KEY})
    line = "The train leaves the station at noon."
    spoken = check_tags(line, await synthesize(server.address, [config(DESCRIPTOR, rate=0), text(line)]), 24000)
    assert spoken.samples > 0 and aura.queries[0]["sample_rate"] == "24000"


@pytest.mark.parametrize(
    ("fault", "key", "code", "message"),
    [
        ("", "dg-wrong", "UNAUTHENTICATED", "HTTP 401"),
        ("quota", KEY, "RESOURCE_EXHAUSTED", "HTTP 402"),
        ("malformed", KEY, "UNAVAILABLE", "malformed frame"),
        ("drop", KEY, "UNAVAILABLE", "code 1006"),
        ("bad_data", KEY, "INVALID_ARGUMENT", "refused the input"),
    ],
)
async def test_deepgram_aura_failures_get_clear_statuses(service_process, fault, key, code, message):
    double = DeepgramAuraDouble(api_key=KEY, fault=fault).start()
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
    assert not any(word in caught.value.details() for word in ("DATA-0000", "enough credits"))
