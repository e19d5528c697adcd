"""``deepgram/aura-...`` in a real TTS service process against the loopback Deepgram Aura double."""

from __future__ import annotations

import asyncio

import pytest

from tests.providers.deepgram_aura_double import DeepgramAuraDouble
from tests.providers.helpers import THREE_PIECES, check_round_trip, refused, speak_three_sentences, speak_with_operator_env
from tests.speech import SENTENCES
from tests.tts.helpers import barge_in, config, transcribe

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
    spoken = await speak_three_sentences(server.address, DESCRIPTOR, aura.base_url, KEY)
    for _ in range(100):  # Close reaches the double just after the stream's end
        if aura.messages and aura.messages[-1]["type"] == "Close":
            break
        await asyncio.sleep(0.02)
    assert aura.queries == [{"model": "aura-2-thalia-en", "encoding": "linear16", "sample_rate": "16000"}]
    assert [(m["type"], m.get("text")) for m in aura.messages] == [
        *(step for s in THREE_PIECES for step in (("Speak", s), ("Flush", None))), ("Close", None)]
    check_round_trip("deepgram aura", spoken, DESCRIPTOR)


async def test_barge_in_clears_and_no_audio_follows(service_process, aura):
    server = service_process("tts")
    long = " ".join(SENTENCES)
    opening = config(DESCRIPTOR, rate=16000, base_url=aura.base_url, api_key=KEY)
    _, after = await barge_in(server.address, opening, long, " Turn off the lights.")
    assert aura.clears == 1, "the barge-in did not Clear the Aura stream"
    audio_after = [r.audio for r in after if r.WhichOneof("event") == "audio"]
    assert audio_after and all(chunk.char_start >= len(long) for chunk in audio_after)
    assert "lights" in transcribe(b"".join(c.audio for c in audio_after)).lower()


async def test_the_operators_deepgram_key_and_url_come_from_the_environment(service_process, aura):
    server = service_process("tts", env={"VOICEMESH_DEEPGRAM_BASE_URL": aura.base_url, "DEEPGRAM_API_KEY": KEY})
    spoken = await speak_with_operator_env(server.address, DESCRIPTOR)
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
    error = await refused(service_process, DeepgramAuraDouble, DESCRIPTOR, KEY, fault, key)
    assert error.code().name == code, error.details()
    assert message in error.details()
    # What the provider wrote goes to the service's log, never to the client (as with HTTP error bodies).
    assert not any(word in error.details() for word in ("DATA-0000", "enough credits"))
